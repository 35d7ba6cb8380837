"""scan/html.py: the report's escaping, number formats, threshold marks (a sign beside the colour) and its
fixed reading guide."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from forgerydet.scan.html import ABOVE, BELOW, GUIDE, count, esc, guide_html, mark, num, rel_src, threshold_text


def test_esc_escapes_markup_and_shows_undecodable_bytes():
    assert esc('<b a="1">&') == "&lt;b a=&quot;1&quot;&gt;&amp;"
    assert esc(os.fsdecode(b"clip\xff.mp4")) == "clip\\xff.mp4" and esc(3) == "3"


def test_numbers_and_counts():
    assert num(0.337873) == "0.338" and num(None) == "–" and num(0.5, ".2f") == "0.50"
    assert count(1, "face") == "1 face" and count(6, "face") == "6 faces" and count(0, "file") == "0 files"


def test_rel_src_is_relative_quoted_and_escaped(tmp_path):
    assert rel_src(tmp_path, tmp_path / "img" / "a b&c.png") == "img/a%20b%26c.png"
    assert rel_src(Path("/r"), Path("/r/x.png")) == "x.png"


def test_a_mark_says_the_side_of_the_threshold_in_a_sign_and_a_title_not_only_in_colour():
    above, below = mark(0.5, 0.5), mark(0.4999, 0.5)
    assert "0.500 " + ABOVE in above and 's-fake' in above and 'title="at or above the threshold 0.500"' in above
    assert "0.4999 " + BELOW in below and 's-real' in below and 'title="below the threshold 0.5000"' in below
    assert mark(None, 0.5) == "–"
    # in words for a screen reader, which neither the colour nor the tooltip reaches (h8's pass); hidden on screen
    assert '<span class="vh"> (at or above the threshold)</span>' in above and "(below the threshold)" in below
    from forgerydet.scan.html import CSS

    assert ".vh{position:absolute;width:1px;height:1px;overflow:hidden" in CSS
    # below the threshold but equal to 3 decimals: more decimals, never '0.338 ▼' beside 'threshold 0.338'
    assert ">0.3376 ▼<" in mark(0.3376, 0.337873) and 'threshold 0.3379"' in mark(0.3376, 0.337873)
    assert ">0.338 ▲<" in mark(0.33790, 0.337873)
    # the hover text names the threshold as the page shows it, not rounded below it ('below the threshold 0.470'
    # beside 'threshold 0.4701' for --threshold 0.47005)
    assert 'title="below the threshold 0.4701"' in mark(0.405, 0.47005)
    assert 'title="at or above the threshold 0.4701"' in mark(0.6, 0.47005)


def test_a_threshold_is_never_shown_below_itself_nor_a_score_on_its_wrong_side():
    """A threshold of 0.027446 was shown as '0.027' beside a REAL '0.027445 ▼': a score above the threshold shown,
    called REAL. It is shown with the decimals that keep it from rounding down, and the scores beside it so too."""
    assert threshold_text(0.337873) == "0.338" and threshold_text(0.5) == "0.500"  # the usual case: 3 decimals
    assert threshold_text(0.027446) == "0.02745" and threshold_text(0.027444) == "0.027444"
    for thr in (0.027446, 0.027444, 0.254491, 0.337873, 0.5):
        for score in (thr - 2e-6, thr - 1e-4, thr, thr + 1e-6, thr + 3e-4):
            shown = float(re.search(r">([\d.]+) [▲▼]<", mark(score, thr)).group(1))
            assert (shown >= float(threshold_text(thr))) == (score >= thr), (thr, score, mark(score, thr))


def test_the_guide_is_one_open_box_with_every_point():
    box = guide_html()
    assert box.startswith('<details class="guide" open>') and box.count("<li>") == len(GUIDE) == 6
    assert "A REAL verdict is never proof" in box and "not a map of the forgery" in box
    assert "unrelated people" in box and "closed or downcast eyes" in box
    assert "http" not in box  # offline: names README sections, links nowhere
    # what the guide calls nearly uniform is what the captions call so (half of the shipped model's maps, not most)
    from forgerydet.scan.report_faces import FLAT_SPREAD
    assert f'"nearly uniform" under {FLAT_SPREAD}x' in html.unescape(box) and "most maps" not in box
    # against a person's enrolled faces, the neighbours are that person's, not unrelated people
    ref = guide_html("Anchor <b>")
    assert ref.count("<li>") == 6 and "unrelated people</li>" not in ref and "Nearest real faces" not in ref
    assert "enrolled as &#x27;Anchor &lt;b&gt;&#x27;" in ref and "no surer than a plain scan" in ref
    # a threshold given with --threshold was not chosen on held-out real faces: the guide must not say it was
    assert "chosen on held-out real faces at a set share" in box and "given with <code>--threshold" not in box
    given = guide_html(threshold_given=True)
    assert "which here was given with <code>--threshold</code>" in given and "which was chosen" not in given


def test_a_file_name_that_would_show_reordered_is_escaped_in_the_report():
    assert esc("invoice\u202egpj.exe") == "invoice\\u202egpj.exe"  # not "invoiceexe.jpg" on screen
    assert esc("<b>\u2067x") == "&lt;b&gt;\\u2067x"
