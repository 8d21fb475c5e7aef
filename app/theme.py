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

CSS = _BASE_CSS + qlens_tab.CSS
