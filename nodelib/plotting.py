"""Plotting helpers for 2-D densities and samples (matplotlib).

A density is passed as a function ``log_prob(points) -> (batch,)`` and evaluated on a regular grid
in batches without recording gradients (``torch.enable_grad`` inside a CNF still works), or as a
precomputed ``(n, n)`` array. Samples are ``(batch, 2)`` tensors or arrays. Nothing here moves the
model: the grid is built on the device and in the dtype the caller names.
"""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

DEFAULT_EXTENT = (-4.0, 4.0, -4.0, 4.0)   # (x_min, x_max, y_min, y_max), as in imshow
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # type: ignore[attr-defined]  # numpy<2


def grid_points(extent=DEFAULT_EXTENT, n: int = 100, *, device=None,
                dtype=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``n × n`` grid over ``extent``: ``(xs, ys, points)`` with ``points`` of shape
    ``(n·n, 2)``, row-major in y (``points.view(n, n, 2)[i, j] = (xs[j], ys[i])``)."""
    x0, x1, y0, y1 = extent
    dtype = dtype or torch.get_default_dtype()
    xs = torch.linspace(x0, x1, n, device=device, dtype=dtype)
    ys = torch.linspace(y0, y1, n, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def log_prob_on_grid(log_prob, extent=DEFAULT_EXTENT, n: int = 100, *, batch_size: int = 4096,
                     device=None, dtype=None) -> np.ndarray:
    """``log_prob`` at the ``n × n`` grid points, as an ``(n, n)`` numpy array (row = y)."""
    _, _, points = grid_points(extent, n, device=device, dtype=dtype)
    with torch.no_grad():
        values = torch.cat([log_prob(chunk).detach() for chunk in points.split(batch_size)])
    return values.reshape(n, n).cpu().numpy()


def grid_mass(log_values: np.ndarray, extent=DEFAULT_EXTENT) -> float:
    """∫ exp(log p) over ``extent`` by the trapezoidal rule on the grid of ``log_values``."""
    n_y, n_x = log_values.shape
    (x0, x1), (y0, y1) = extent[:2], extent[2:]
    xs, ys = np.linspace(x0, x1, n_x), np.linspace(y0, y1, n_y)
    return float(_trapezoid(_trapezoid(np.exp(log_values), xs, axis=1), ys))


def plot_density(ax, density, extent=DEFAULT_EXTENT, n: int = 100, *, cmap: str = "viridis",
                 title: str | None = None, device=None, dtype=None, **imshow_kw):
    """Heat map of ``p = exp(log p)`` on ``ax``. ``density`` is a function ``log_prob(points)``
    or an ``(n, n)`` array of log-densities; returns the image."""
    log_values = density if isinstance(density, np.ndarray) else log_prob_on_grid(
        density, extent, n, device=device, dtype=dtype)
    image = ax.imshow(np.exp(log_values), origin="lower", extent=extent, cmap=cmap,
                      interpolation="nearest", aspect="equal", **imshow_kw)
    _clean(ax, extent, title)
    return image


def plot_samples(ax, samples, extent=DEFAULT_EXTENT, *, s: float = 1.0, alpha: float = 0.5,
                 color: str = "C0", title: str | None = None, **scatter_kw):
    """Scatter plot of ``(batch, 2)`` samples on ``ax``; returns the collection."""
    xy = _numpy(samples)
    points = ax.scatter(xy[:, 0], xy[:, 1], s=s, alpha=alpha, color=color, linewidths=0,
                        **scatter_kw)
    _clean(ax, extent, title)
    return points


def plot_frames(trajectories, times, extent=DEFAULT_EXTENT, *, n_frames: int = 5,
                titles=None, s: float = 1.0, size: float = 2.0):
    """A still grid: one row per trajectory (``(len(times), batch, 2)``), ``n_frames`` columns
    at evenly spaced indices of ``times``. Returns the figure."""
    trajectories = [trajectories] if _is_single(trajectories) else list(trajectories)
    idx = np.linspace(0, len(times) - 1, n_frames).round().astype(int)
    fig, axes = plt.subplots(len(trajectories), n_frames, squeeze=False,
                             figsize=(size * n_frames, size * len(trajectories)))
    for r, traj in enumerate(trajectories):
        for c, i in enumerate(idx):
            plot_samples(axes[r, c], traj[i], extent, s=s, color=f"C{r}",
                         title=f"t = {float(times[i]):.2f}" if r == 0 else None)
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r])
    fig.tight_layout()
    return fig


def animate_samples(trajectories, times, extent=DEFAULT_EXTENT, *, titles=None, s: float = 1.0,
                    size: float = 2.6, dpi: int = 60, interval: int = 150):
    """An animation of samples moving along their trajectories, one panel per trajectory.

    Embed it with ``IPython.display.HTML(animation_html(anim))``: every frame becomes a PNG inside
    the page, so keep ``len(times)`` and ``dpi`` small. The figure is closed so that the notebook
    does not also show it as a static image.
    """
    trajectories = [trajectories] if _is_single(trajectories) else list(trajectories)
    data = [_numpy(traj) for traj in trajectories]
    fig, axes = plt.subplots(1, len(data), squeeze=False, dpi=dpi,
                             figsize=(size * len(data), size))
    axes = axes[0]
    scatters = [plot_samples(ax, d[0], extent, s=s, color=f"C{k}",
                             title=None if titles is None else titles[k])
                for k, (ax, d) in enumerate(zip(axes, data))]
    label = fig.suptitle("")

    def draw(i):
        for sc, d in zip(scatters, data):
            sc.set_offsets(d[i])
        label.set_text(f"t = {float(times[i]):.2f}")
        return (*scatters, label)

    anim = animation.FuncAnimation(fig, draw, frames=len(times), interval=interval, blit=False)
    plt.close(fig)
    return anim


def _is_single(trajectories) -> bool:
    return hasattr(trajectories, "ndim") and trajectories.ndim == 3


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _clean(ax, extent, title):
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
    if title is not None:
        ax.set_title(title, fontsize=9)


# matplotlib's JS player takes its button icons from Font Awesome on a CDN; the book must work
# offline, so the stylesheet link goes and each icon becomes a plain Unicode glyph.
_PLAYER_GLYPHS = {
    "fa fa-minus": "&#8722;", "fa fa-plus": "+", "fa fa-fast-backward": "&#9198;",
    "fa fa-step-backward": "&#9664;|", "fa fa-play fa-flip-horizontal": "&#9664;",
    "fa fa-pause": "&#10074;&#10074;", "fa fa-play": "&#9654;", "fa fa-step-forward": "|&#9654;",
    "fa fa-fast-forward": "&#9197;",
}


def animation_html(anim, **kwargs) -> str:
    """``anim.to_jshtml(**kwargs)`` made self-contained: no CDN stylesheet, glyph buttons.
    Display it with ``IPython.display.HTML(animation_html(anim))``."""
    html = re.sub(r"<link[^>]*font-awesome[^>]*>", "", anim.to_jshtml(**kwargs))
    for icon, glyph in _PLAYER_GLYPHS.items():
        html = html.replace(f'<i class="{icon}"></i>', glyph)
    return html
