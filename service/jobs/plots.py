"""Loss curves drawn as SVG or PNG bytes, with no browser and no Flask.

Drawn with matplotlib's object-oriented API (a ``Figure`` and its own Agg or SVG canvas) and
never pyplot: pyplot keeps global state that the API's threads would share, a ``Figure`` does
not. matplotlib is imported by the first chart drawn, not with this module: an API process that
never draws one never holds its modules and objects (which its full collections would walk).
"""

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ImageFormat = Literal["svg", "png"]
MEDIA_TYPES: dict[ImageFormat, str] = {"svg": "image/svg+xml", "png": "image/png"}
FIGURE_INCHES = (8, 4.5)
PNG_DPI = 100
NO_EPOCHS = "no epochs yet"
# No creation date or software version written into the files.
NO_DATE = {"svg": {"Date": None}, "png": {"Software": None}}


@dataclass(frozen=True)
class LossCurve:
    """One job's losses by epoch; ``val_loss`` holds None where there was no validation."""

    label: str
    epochs: Sequence[int]
    train_loss: Sequence[float]
    val_loss: Sequence[float | None]


def loss_chart(
    curves: Sequence[LossCurve], title: str, image_format: ImageFormat, log: bool = False
) -> bytes:
    """One chart of ``curves``: one colour per curve, train solid, validation dashed; an empty
    chart, its title saying so, while no curve has an epoch."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, layout="tight")
    axes = figure.add_subplot()
    colours = colormaps["tab10" if len(curves) <= 10 else "tab20"].colors
    for curve, colour in zip(curves, colours, strict=False):
        draw_curve(axes, curve, colour)
    if not any(curve.epochs for curve in curves):
        title = f"{title}: {NO_EPOCHS}"
    else:
        axes.legend(loc="upper right", fontsize="small")
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss (log scale)" if log else "loss")
    if log:
        axes.set_yscale("log", nonpositive="mask")
    axes.grid(True, alpha=0.3)
    return figure_bytes(figure, image_format)


def draw_curve(axes, curve: LossCurve, colour) -> None:
    if not curve.epochs:
        return
    axes.plot(curve.epochs, curve.train_loss, color=colour, label=f"{curve.label} train")
    if any(loss is not None for loss in curve.val_loss):
        val_loss = [math.nan if loss is None else loss for loss in curve.val_loss]
        axes.plot(
            curve.epochs, val_loss, color=colour, linestyle="--", label=f"{curve.label} validation"
        )


def figure_bytes(figure, image_format: ImageFormat) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    canvases = {"svg": FigureCanvasSVG, "png": FigureCanvasAgg}
    buffer = io.BytesIO()
    canvases[image_format](figure).print_figure(
        buffer, format=image_format, dpi=PNG_DPI, metadata=NO_DATE[image_format]
    )
    return buffer.getvalue()
