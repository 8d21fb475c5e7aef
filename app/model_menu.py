"""The model dropdown's entries: every registered model, saying whether it is here, would be downloaded (and how
large), or is not offered on this host.  Labels carry no server paths."""

from __future__ import annotations

from collections.abc import Iterable

from attack_engine.models import list_models
from attack_engine.models.checkpoints import offline
from attack_engine.models.registry import ModelEntry

PRESENT, DOWNLOAD, NOT_HERE, NOT_OFFERED = "present", "download", "not here", "not offered"


def model_state(e: ModelEntry, offered: bool) -> str:
    """One of :data:`PRESENT`, :data:`DOWNLOAD` (on first use), :data:`NOT_HERE` (downloads are off),
    :data:`NOT_OFFERED` (this host does not serve it)."""
    if not offered:
        return NOT_OFFERED
    if e.available():
        return PRESENT
    return NOT_HERE if offline(hf=e.hub) else DOWNLOAD


def model_label(e: ModelEntry, state: str) -> str:
    size = f"≈{e.download_mb:.0f} MB" if e.download_mb else "weights"
    mark = {
        PRESENT: "✓ bundled" if e.family == "bundled" else "✓ present",
        DOWNLOAD: f"downloads {size} on first use",
        NOT_HERE: f"not here ({size}; downloads are off)",
        NOT_OFFERED: "not offered on this host",
    }[state]
    return f"{e.title} · {e.num_classes} classes · {mark}"


def model_choices(offered: Iterable[str] | None = None, show_all: bool = True) -> list[tuple[str, str]]:
    """``(label, id)`` for the dropdown: the offered models (present first), then, with ``show_all``, the
    registered ones this host does not offer (test-only ``custom`` entries that are not offered are left out)."""
    ids = None if offered is None else list(offered)
    rows = []
    for e in list_models():
        is_offered = ids is None or e.id in ids
        if not is_offered and (not show_all or e.family == "custom"):
            continue
        state = model_state(e, is_offered)
        rank = (not is_offered, state != PRESENT, ids.index(e.id) if ids and is_offered else 0)
        rows.append((rank, (model_label(e, state), e.id)))
    return [r for _, r in sorted(rows, key=lambda t: t[0])]
