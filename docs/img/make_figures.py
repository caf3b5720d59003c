"""Regenerate the committed documentation figures:  python docs/img/make_figures.py"""

from pathlib import Path

from direct_opt.plotting import plot_flat_stiff_concept

HERE = Path(__file__).resolve().parent


def main(out_dir: Path = HERE) -> list[Path]:
    """Write every figure into ``out_dir``; returns their paths."""
    path = Path(out_dir) / "flat_stiff.png"
    plot_flat_stiff_concept(path=path)
    return [path]


if __name__ == "__main__":
    for p in main():
        print("wrote", p)
