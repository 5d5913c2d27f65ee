"""Keyboard use of the result grids and the image dialog: arrows move between cards, Enter opens one (a focused
button's own behaviour), arrows in the open dialog show the previous or next image, Esc closes it (Streamlit's
dialog does that itself); and Shift-click ticks a range of a compact grid's boxes.

Streamlit has no keyboard events, so this is one listener on the page's document, installed from a frame of no
size (ui/web/page_script.py, as the result grid scrolls the page up). It acts only where no text field has the
focus, so typing in a search box or a filter keeps its arrows, and the page still scrolls with the arrows until a
card has the focus (Tab reaches the cards' buttons).
"""

from __future__ import annotations

from string import Template

from imgsearch.ui.web import page_script

# The element keys the listener clicks (their containers carry the class `st-key-<key>`).
PREV_KEY = "lightbox_prev"
NEXT_KEY = "lightbox_next"
GRID_CLASS = "-cardgrid"  # a result grid's container key ends so (widgets.GRID_SUFFIX)
COMPACT_CLASS = "-compactgrid"  # a compact grid's (compact_grid.SUFFIX)
OPEN_CLASS = "_open_"  # a card's "Open" button's key has it (widgets.card)

_SCRIPT = Template("""
const doc = window.parent.document, win = window.parent;
if (!win.__imgsearchKeyboard) {
  win.__imgsearchKeyboard = true;
  const typing = (t) => {
    const tag = ((t && t.tagName) || "").toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable);
  };
  doc.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.altKey || e.metaKey || typing(e.target)) return;
    const dialog = doc.querySelector('[role="dialog"]');
    if (dialog) {
      const key = {ArrowLeft: "$prev", ArrowRight: "$next"}[e.key];
      const button = key && dialog.querySelector(".st-key-" + key + " button");
      if (button && !button.disabled) { e.preventDefault(); button.click(); }
      return;
    }
    if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) return;
    // One entry a card (a card's button can come as more than one element), with the button it focuses.
    const cards = [...new Set([...doc.querySelectorAll(
        '[class*="$grid"] [class*="$open"] button, [class*="$compact"] [class*="$open"] button')]
      .map((b) => b.closest('[data-testid="stColumn"]')).filter((c) => c))];
    const opens = cards.map((c) => c.querySelector('[class*="$open"] button'));
    const at = cards.findIndex((c) => c && c.contains(doc.activeElement));
    if (at < 0) return;  // no card has the focus: the arrows scroll the page as usual
    let to = -1;
    if (e.key === "ArrowLeft") to = at - 1;
    else if (e.key === "ArrowRight") to = at + 1;
    else {  // the nearest card in the row below (above)
      const here = cards[at].getBoundingClientRect(), dir = e.key === "ArrowDown" ? 1 : -1;
      let best = Infinity;
      cards.forEach((c, k) => {
        const r = c.getBoundingClientRect(), dy = (r.top - here.top) * dir;
        const cost = dy * 1000 + Math.abs(r.left - here.left);
        if (dy > 5 && cost < best) { best = cost; to = k; }
      });
    }
    if (to < 0 || to >= opens.length) return;
    e.preventDefault();
    opens[to].focus();
    opens[to].scrollIntoView({block: "nearest"});
  });
  // Shift-click on a compact grid's tick box ticks (or unticks) every box from the last one clicked to it. The
  // last one is kept by its key: the rerun a tick starts may draw the grid's boxes anew.
  const keyOf = (box) => [...(box.closest('[class*="st-key-"]') || box).classList].find((c) => c.startsWith("st-key-"));
  let last = null;
  doc.addEventListener("click", (e) => {
    const box = e.target.closest && e.target.closest('[class*="$compact"] [data-testid="stCheckbox"]');
    if (!box) return;
    const boxes = [...doc.querySelectorAll('[class*="$compact"] [data-testid="stCheckbox"]')];
    const here = boxes.indexOf(box), from = last === null ? -1 : boxes.findIndex((b) => keyOf(b) === last);
    last = keyOf(box);
    if (!e.shiftKey || from < 0 || from === here) return;
    setTimeout(() => {  // after this click has ticked its own box
      const want = box.querySelector("input").checked;
      const [lo, hi] = from < here ? [from, here] : [here, from];
      for (let k = lo; k <= hi; k++) {
        const input = boxes[k].querySelector("input");
        if (input && input.checked !== want) input.click();
      }
    }, 0);
  }, true);  // capturing: the tick box's own handlers stop the click from bubbling up to the document
}
""").substitute(prev=PREV_KEY, next=NEXT_KEY, grid=GRID_CLASS, open=OPEN_CLASS,
                                         compact=COMPACT_CLASS)


def install() -> None:
    """Put the listener on the page; call it once per run (ui/web/app.py does). The listener is added once per
    page load, however many runs install it."""
    page_script.run(_SCRIPT, "keyboard")
