"""The animation embed must work offline: no CDN stylesheet, no icon font."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import animation  # noqa: E402

from nodelib.plotting import animation_html  # noqa: E402


def test_animation_html_is_self_contained():
    fig, ax = plt.subplots()
    (line,) = ax.plot([0, 1])
    anim = animation.FuncAnimation(fig, lambda i: line.set_ydata([0, i]), frames=2)
    raw = anim.to_jshtml()
    assert "font-awesome" in raw and 'class="fa fa-play"' in raw   # what we must remove
    html = animation_html(anim)
    plt.close(fig)
    assert "font-awesome" not in html and "fa fa-" not in html
    assert "https://" not in html
    assert "&#9654;" in html and "<img" in html   # play glyph and the frames are still there
