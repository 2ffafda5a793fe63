"""Networks of real size: programming, drift, forward and memory of torchvision's
resnet18 and vgg11_bn (random weights, 10 classes, random 32x32 colour images).

    .venv/bin/python bench/large_networks.py                 # resnet18, about 10 minutes on 2 cores
    .venv/bin/python bench/large_networks.py --vgg           # also vgg11_bn's one-chip memory, +5 minutes
    .venv/bin/python bench/large_networks.py --chips 100     # the forward with 100 chips

(a) Programming + drift to one day, per chip and per weight and chip, on ONE thread
    (torch.set_num_threads(1)): ``xmodel.program(n) ; xmodel.drift(86400)`` against
    aihwkit's own pipeline on the same layers (``convert_to_analog`` with an
    ``InferenceRPUConfig`` holding the preset's noise model, perfect forward, then per
    chip ``program_analog_weights`` and ``drift_analog_weights``), ``pcm`` and
    ``reram_cmo``, each with its preset's drift compensation (pcm: global; its reads
    are part of both sides' drift).
(b) The chips' device state after programming, measured from the tensors each layer
    holds (conductances, drift parameters, fault codes, the weights read at a time),
    in bytes per weight and chip.
(c) ``crossbar.evaluate`` of ``--chips`` chips on 512 images at one day against as many
    clean digital passes (both on the machine's threads), with a perfect periphery and
    with aihwkit's default DAC/ADC/output noise.
(d) With ``--vgg``: the peak resident memory of a one-chip ``evaluate`` of resnet18 and
    of vgg11_bn (64 images), each in a fresh process.
(g) On a GPU (``--blocks g``; it says so and stops where there is no CUDA): resnet18,
    ``--chips`` chips (100 for the issue's figures) on ``--images`` images (2,000),
    ``evaluate`` against as many clean passes, perfect periphery and aihwkit's; and
    programming + drift with chips drawn one by one against blocks of
    ``crossbar.arrays.CHIP_BLOCK["cuda"]`` chips. ``--device cpu`` runs it here.

    .venv/bin/python bench/large_networks.py --blocks g --chips 100 --images 2000
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time

import torch
import torchvision

import crossbar

T_DAY, N_IMAGES, BATCH = 86400.0, 512, 128
NETWORKS = {"resnet18": torchvision.models.resnet18, "vgg11_bn": torchvision.models.vgg11_bn}


def network(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return NETWORKS[name](num_classes=10).eval()


def n_weights(net) -> int:
    return sum(layer.weight.numel() for _, layer in crossbar.mapped_layers(net))


def ours_programming(net, preset: str, n_chips: int) -> float:
    """Seconds a chip for program + drift to one day, one thread."""
    xmodel = crossbar.convert(net, preset)
    start = time.perf_counter()
    xmodel.program(n_chips, seed=0)
    xmodel.drift(T_DAY)
    return (time.perf_counter() - start) / n_chips


def aihwkit_programming(net, preset: str, n_chips: int) -> float:
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import InferenceRPUConfig

    chip = crossbar.get_preset(preset)
    rpu = InferenceRPUConfig()
    rpu.noise_model = copy.deepcopy(chip.noise_model)
    rpu.forward.is_perfect = True
    rpu.drift_compensation = copy.deepcopy(chip.drift_compensation_model)  # pcm's global compensation, as ours
    rpu.mapping.max_input_size, rpu.mapping.max_output_size = chip.max_in, chip.max_out
    analog = convert_to_analog(copy.deepcopy(net), rpu).eval()
    start = time.perf_counter()
    for k in range(n_chips):
        torch.manual_seed(k)
        analog.program_analog_weights()
        analog.drift_analog_weights(T_DAY)
    return (time.perf_counter() - start) / n_chips


def state_bytes(net, preset: str, n_chips: int = 2) -> float:
    """Bytes a chip's device state takes per weight, from the tensors the layers hold."""
    xmodel = crossbar.convert(net, preset).program(n_chips, seed=0).drift(T_DAY)
    total = 0
    for layer in xmodel.crossbar_layers:
        array = layer.array
        held = [array.stuck, array._pinned, layer._w, layer._wn]
        total += sum(t.numel() * t.element_size() for t in held if t is not None)
    return total / n_chips / n_weights(net)


def best(fn, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_block(net, x, y, n_chips: int) -> None:
    def clean() -> None:
        with torch.no_grad():
            for _ in range(n_chips):
                for i in range(0, len(x), BATCH):
                    net(x[i:i + BATCH])

    clean_s = best(clean)
    print(f"\n(c) {n_chips} chips on {len(x)} images at 1 day; {n_chips} clean passes: {clean_s:.1f} s")
    print("| preset | periphery | seconds | x clean |\n| --- | --- | ---: | ---: |")
    for name in ("pcm", "reram_cmo"):
        for periphery in (False, True):
            preset = crossbar.get_preset(name, **(crossbar.AIHWKIT_PERIPHERY if periphery else {}))
            seconds = best(lambda: crossbar.evaluate(net, (x, y), preset, [T_DAY], n_chips, batch_size=BATCH), 1)
            print(f"| {name} | {'aihwkit' if periphery else 'perfect'} | {seconds:.1f} | {seconds / clean_s:.2f} |",
                  flush=True)


def gpu_block(n_chips: int, n_images: int, device: str) -> None:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("\n(g) no CUDA GPU here: skipped")
        return
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    net = network("resnet18").to(dev)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n_images, 3, 32, 32, generator=gen).to(dev)
    y = torch.randint(0, 10, (n_images,), generator=gen).to(dev)
    batch = 500

    def timed(fn) -> float:
        def run() -> None:
            fn()
            sync()
        run()  # warm-up: kernels, allocator
        return best(run)

    def clean() -> None:
        with torch.no_grad():
            for _ in range(n_chips):
                for i in range(0, n_images, batch):
                    net(x[i:i + batch])

    clean_s = timed(clean)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"\n(g) {name}: resnet18, {n_chips} chips on {n_images} images at 1 day; clean passes {clean_s:.2f} s")
    print("| preset | periphery | seconds | x clean |\n| --- | --- | ---: | ---: |")
    for preset_name in ("pcm", "reram_cmo"):
        for periphery in (False, True):
            preset = crossbar.get_preset(preset_name, **(crossbar.AIHWKIT_PERIPHERY if periphery else {}))
            seconds = timed(lambda: crossbar.evaluate(net, (x, y), preset, [T_DAY], n_chips, batch_size=batch,
                                                      device=dev))
            print(f"| {preset_name} | {'aihwkit' if periphery else 'perfect'} | {seconds:.2f} | "
                  f"{seconds / clean_s:.2f} |", flush=True)
    xmodel = crossbar.convert(net, "pcm").to(dev)
    blocks = crossbar.arrays.CHIP_BLOCK
    saved = blocks.get(dev.type, 1)
    print("programming + drift of pcm, s for all chips:", end="")
    for size in (1, saved if saved > 1 else 16):
        blocks[dev.type] = size
        print(f" {size} a call {timed(lambda: xmodel.program(n_chips).drift(T_DAY)):.2f};", end="", flush=True)
    blocks[dev.type] = saved
    if dev.type == "cuda":
        print(f"\npeak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")


def peak_memory(name: str) -> dict:
    code = f"""
import json, torch, large_networks as b, crossbar
net = b.network({name!r})
x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = hwm()
crossbar.evaluate(net, (x, y), "pcm", [{T_DAY}], 1, batch_size=32)
print(json.dumps(dict(before=before, peak=hwm(), weights=b.n_weights(net))))
"""
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, default=16, help="chips of the forward block (c), default 16")
    parser.add_argument("--program-chips", type=int, default=4, help="chips of (a) on our side, default 4")
    parser.add_argument("--aihwkit-chips", type=int, default=2, help="chips of (a) on aihwkit's side, default 2")
    parser.add_argument("--vgg", action="store_true", help="also vgg11_bn in (a), (b) and (d)")
    parser.add_argument("--blocks", default="abcd",
                        help="which blocks to run, e.g. c (default: abcd; d needs --vgg; g: the GPU's)")
    parser.add_argument("--images", type=int, default=2000, help="images of the GPU block (g), default 2000")
    parser.add_argument("--device", default="cuda", help="where the GPU block (g) runs, default cuda")
    args = parser.parse_args(argv)
    names = ["resnet18", "vgg11_bn"] if args.vgg else ["resnet18"]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; (a) and (b) on one thread")
    torch.set_num_threads(1)
    if "a" in args.blocks:
        print("\n(a) programming + drift to 1 day, one thread")
        print("| network | preset | weights | ours, s/chip | ns/weight-chip | aihwkit, s/chip | aihwkit / ours |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in names if "a" in args.blocks else ():
        net = network(name)
        n = n_weights(net)
        for preset in ("pcm", "reram_cmo"):
            ours = ours_programming(net, preset, args.program_chips)
            theirs = aihwkit_programming(net, preset, args.aihwkit_chips)
            print(f"| {name} | {preset} | {n / 1e6:.1f}M | {ours:.2f} | {ours / n * 1e9:.0f} | {theirs:.2f} | "
                  f"{theirs / ours:.1f} |", flush=True)
    if "b" in args.blocks:
        print("\n(b) device state after programming and a read, bytes per weight and chip")
    for name in names if "b" in args.blocks else ():
        net = network(name)
        print(f"{name}: " + ", ".join(f"{p} {state_bytes(net, p):.1f}" for p in ("pcm", "reram_cmo")), flush=True)
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(N_IMAGES, 3, 32, 32, generator=gen), torch.randint(0, 10, (N_IMAGES,), generator=gen)
    if "c" in args.blocks:
        forward_block(network("resnet18"), x, y, args.chips)
    if "g" in args.blocks:
        gpu_block(args.chips, args.images, args.device)
    if args.vgg and "d" in args.blocks:
        print("\n(d) one chip's evaluate (pcm, 64 images), peak resident memory in a fresh process")
        for name in names:
            got = peak_memory(name)
            print(f"{name}: {got['weights'] / 1e6:.1f}M weights, peak {got['peak'] / 2**30:.2f} GiB "
                  f"(+{(got['peak'] - got['before']) / 2**30:.2f} GiB over the process before evaluate)", flush=True)


if __name__ == "__main__":
    main()
