"""``fieldfit SCENE --blocks AxB [--overlap 0.15] [--time-budget S | --steps N] [--out PARENT] [rbf options]``.

The rbf options are those of ``fieldfit SCENE --method rbf`` (``fieldfit --method rbf --help``), given to every
block.
"""

import shutil
import time

from fieldfit.args import Parser
from fieldfit.errors import InputError
from fieldfit.runs import entries

from .config import BlocksConfig
from .partition import parse_grid
from .pipeline import BLOCK_METHOD, check_options, fit_blocks, parent_run

OWN = ("downscale", "test_every")  # rbf options that are the parent's too (the scene is loaded with them)


def parser():
    from fieldfit.config import config_flags, flag_name
    from fieldfit.methods.rbf.config import RadianceConfig

    p = Parser(prog="fieldfit SCENE --blocks AxB", description="Fit a large world-space scene as A x B overlapping "
               "blocks, each its own rbf run, under one parent run that render / eval / view / export treat as one.")
    p.add_argument("scene", help="posed-image scene folder or built-in (e.g. street)")
    p.add_argument("--blocks", dest="grid", default="2x2",
                   help="AxB blocks: A along the wider horizontal axis (default 2x2)")
    p.add_argument("--overlap", type=float, default=0.15,
                   help="each block's box reaches this share of its cell's side past the cell (default 0.15)")
    p.add_argument("--min-share", type=float, default=BlocksConfig.min_share,
                   help="a camera trains the blocks that fill at least this share of its image (default 0.1)")
    p.add_argument("--train", default="together", choices=("together", "apart"),
                   help="together (default): one optimiser over every block through the blended field; apart: each "
                        "block alone on the photos that see it, one after another (Block-NeRF's way)")
    p.add_argument("--method", default=BLOCK_METHOD, help="the blocks' method: rbf (the one that blends per sample)")
    p.add_argument("--time-budget", type=float, help="seconds of optimisation in all (apart: split evenly)")
    p.add_argument("--steps", type=int, help="optimisation steps in all (apart: split evenly over the blocks)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="parent run folder (default runs/<scene>-blocks-<time>); the same --out again goes "
                                 "on where it stopped")
    group = p.add_argument_group(f"options of --method {BLOCK_METHOD}, given to every block")
    flags = config_flags(RadianceConfig)
    for name, f in sorted(flags.items()):
        flag = flag_name(name)
        default = "" if f.default is None else f" (default {f.default})"
        if f.type is bool:
            group.add_argument(flag, dest=f"opt_{name}", metavar="on|off", nargs="?", const="on", help=f.help + default)
        else:
            group.add_argument(flag, dest=f"opt_{name}", metavar=f.type.__name__.upper(), help=f.help + default)
    return p, flags


def main(argv) -> int:
    from fieldfit import dist
    from fieldfit.api import check_seed, resolve_device
    from fieldfit.config import given_options
    from fieldfit.fingerprint import input_record
    from fieldfit.scenes.inputs import classify
    from fieldfit.trainer import Budget

    p, flags = parser()
    a = p.parse_args(argv)
    if dist.launched() > 1:
        raise InputError("torchrun", "a fit in blocks runs in one process", "run fieldfit SCENE --blocks AxB alone")
    if a.method != BLOCK_METHOD:
        raise InputError(f"--method {a.method}", "blocks are fitted with rbf (its density field blends per sample)",
                         "leave --method out")
    options = {name: getattr(a, f"opt_{name}") for name in flags}
    own = {k: options.pop(k) for k in OWN if options.get(k) is not None}
    cfg = BlocksConfig(**given_options(BlocksConfig, {"grid": a.grid, "overlap": a.overlap,
                                                      "min_share": a.min_share, "train": a.train, **own},
                                                  "fieldfit --blocks"))
    parse_grid(cfg.grid)
    budget = Budget.of(a.time_budget, a.steps, BlocksConfig.DEFAULT_SECONDS)
    seed, device = check_seed(a.seed), resolve_device(a.device)
    check_options(options)  # every argument checked before a folder is made
    inp = classify(a.scene)
    run = parent_run(inp.name, a.out)
    try:
        run.header = {**input_record(inp), "method": "blocks", "command": "fieldfit " + " ".join(argv)}
        t = time.perf_counter()
        m = fit_blocks(inp, run, cfg, budget, device=device, seed=seed, options=options)
    except InputError:
        if run.fresh and set(entries(run.path)) <= {"log"}:  # bad input before any result: no folder left behind
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    finally:
        run.release()
    test = m.get("test", {})
    print(f"done: test.psnr {test.get('psnr', float('nan')):.4g}, test.ssim {test.get('ssim', float('nan')):.4g}, "
          f"blocks {len(m['blocks'])}, params {m['params']}, watertight {m.get('watertight')}, "
          f"{time.perf_counter() - t:.0f} s")
    print(f"results: {run.path.resolve()}")
    return 0


__all__ = ["main", "parser"]
