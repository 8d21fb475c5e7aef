"""The page's look: the CSS given to ``launch()`` (layout of panels, captions, the status line).

Colours of the figures live with the figures (:mod:`app.figures`); this module holds what the browser styles.
"""

from app.tabs import qlens as qlens_tab

_BASE_CSS = """
.explain {font-size: 0.82em !important; color: var(--body-text-color-subdued); line-height: 1.25; margin-top: -4px}
.explain p {margin: 0 !important}
#status {min-height: 3.2em}
.panel img {width: 100% !important; height: 100% !important; object-fit: contain; image-rendering: pixelated}
.panel.smooth img {image-rendering: auto}
#cmp_grid img {width: 100% !important; height: auto !important; object-fit: contain}
footer {display: none !important}
"""

_DARK_CSS = """
.dark .js-plotly-plot .main-svg text[style*="fill: rgb(68, 68, 68)"] {fill: var(--body-text-color) !important}
.dark .js-plotly-plot .main-svg .legendtoggle {fill: transparent !important}
"""
"""Plotly figures have transparent backgrounds (the page shows through); in dark mode their default text colour
(Plotly's #444, written inline) becomes the page's text colour.  Text given its own colour keeps it."""

PHONE_MAX_PX = 640  # at most this wide, the layout is the phone one

_PHONE_CSS = f"""
.gradio-container {{overflow: clip !important}}
@media (max-width: {PHONE_MAX_PX}px) {{
  #scrub_row {{position: sticky; top: 0; z-index: 30; flex-wrap: nowrap; gap: 4px;
              background: var(--background-fill-primary); padding: 4px 0; box-shadow: 0 2px 4px rgba(0,0,0,.15)}}
  #scrub_row > * {{min-width: 0 !important}}
  #scrub {{padding: 4px 8px !important}}
  #scrub .head {{flex-wrap: nowrap}}
  #scrub .head > label {{flex: 1 1 0; min-width: 0; overflow: hidden}}
  #scrub .head > label span {{display: block}}
  #scrub label span, #scrub [data-testid="block-info"] {{white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
                                                      font-size: 12px}}
  #play_btn, #best_btn {{flex: 0 0 64px !important; min-width: 64px !important; max-width: 64px; padding: 2px 4px;
                        font-size: 12px; white-space: normal}}
}}
"""
"""On a phone the columns stack and the panels come one below the other; the record slider (with Play and Best
iterate) stays at the top of the screen while the panels scroll under it, so the slider and the panel being
looked at are in view together.  ``.gradio-container`` clips instead of hiding overflow (the same look): with
``overflow: hidden`` it would be the sticky row's scroll container, which never scrolls.  That rule stays outside
the media query because Gradio scopes the rules inside one to descendants of the container."""

CSS = _BASE_CSS + _DARK_CSS + _PHONE_CSS + qlens_tab.CSS
