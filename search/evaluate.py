"""Measure a trained network on chips from the command line: writes the scenario
(``mode: evaluate``) and runs it with ``search.run``.

    python -m search.evaluate small.pt --model my_nets:SmallNet --devices pcm reram_cmo --times 1s 1d 1y
    python -m search.evaluate lenet.pt --model lenet5 --dataset idx --root ../shared/data/mnist-t10k

It writes ``<name>.yaml`` in the current folder (default name ``evaluate_<checkpoint's
stem>``; a file of that name with other contents is refused unless ``--force``), so
that the experiment can be edited and run again with ``python -m search.run``; the run
folder is ``runs/<name>`` (``--out``). Everything is validated before anything is
written: one line and exit 2 for a bad module, checkpoint, device or time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import yaml


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m search.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="the trained weights: torch.save(model.state_dict(), path)")
    parser.add_argument("--model", required=True,
                        help="a registered network (lenet5, mlp, ...) or your own, module:callable")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the network (repeatable; YAML values), e.g. --option width=32")
    parser.add_argument("--dataset", default="digits", help="a data set's name, or a YAML mapping "
                        "('{name: image_folder, root: images, size: [32, 32]}'); default digits")
    parser.add_argument("--root", help="the data set's folder (or tensors' file)")
    parser.add_argument("--devices", nargs="+", default=["pcm", "reram_cmo"], metavar="PRESET",
                        help="device presets (default: pcm reram_cmo)")
    parser.add_argument("--times", nargs="+", default=["1s", "1h", "1d", "30d", "1y"], metavar="TIME",
                        help="times since programming (default: 1s 1h 1d 30d 1y)")
    parser.add_argument("--chips", type=int, default=50, help="chips per device and time (default 50)")
    parser.add_argument("--name", help="the scenario's name (default evaluate_<checkpoint's stem>)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite <name>.yaml and start the run folder over")
    for flag, help_text in (("--out", "run folder (default runs/<name>)"), ("--seeds", "repeat per seed: 0-4"),
                            ("--workers", "parallel local processes"), ("--device", "cpu, cuda or cuda:N")):
        parser.add_argument(flag, help=help_text)
    parser.add_argument("--resume", action="store_true", help="continue the run in the folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def _value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def scenario_of(args: argparse.Namespace) -> dict:
    """The scenario the arguments describe, as YAML data."""
    from .errors import ScenarioError

    options = {}
    for item in args.option:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"--option {item}: expected key=value, e.g. --option width=32")
        options[key.strip()] = _value(text)
    model: dict[str, Any] = {("import" if ":" in args.model else "name"): args.model}
    if options:
        model["options"] = options
    model["checkpoint"] = args.checkpoint
    dataset = _value(args.dataset)
    if not isinstance(dataset, dict):
        dataset = {"name": str(args.dataset)}
    if args.root is not None:
        dataset["root"] = args.root
    return {"name": args.name or f"evaluate_{Path(args.checkpoint).stem}", "mode": "evaluate", "model": model,
            "dataset": dataset, "devices": list(args.devices),
            "report": {"t_inference": [_value(t) for t in args.times], "n_chips": args.chips}}


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    from . import run
    from .config import beside, load_scenario
    from .errors import ScenarioError

    try:
        data = scenario_of(args)
        path = Path(f"{data['name']}.yaml")
        load_scenario(data=beside(data, Path.cwd()))  # every check, before anything is written
        text = yaml.safe_dump(data, sort_keys=False)
        if path.exists() and path.read_text() != text and not args.force:
            raise ScenarioError(f"{path} exists with another scenario; give another --name, or --force to "
                                "overwrite it")
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path.write_text(text)
    print(f"scenario: {path} (run it again with: python -m search.run {path})")
    passed = [part for flag, value in (("--out", args.out), ("--seeds", args.seeds), ("--workers", args.workers),
                                       ("--device", args.device)) if value is not None for part in (flag, value)]
    passed += ["--resume"] * args.resume + ["--force"] * args.force + ["--quiet"] * args.quiet
    return run.main([str(path), *passed])


if __name__ == "__main__":
    sys.exit(main())
