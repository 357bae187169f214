"""Parsers of nvidia-smi, tegrastats, the rknpu load file and npu-smi, on samples."""

import pytest

from node_agent.npu_smi import parse_npu_smi
from node_agent.nvidia_smi import parse_nvidia_smi
from node_agent.rknpu import parse_rknpu_load
from node_agent.tegrastats import parse_gpu_load, parse_tegrastats
from schemas.messages import Accelerator
from tests.node_agent.telemetry_samples import sample

MIB = 1024 * 1024


def test_nvidia_smi_two_gpus():
    gpus = parse_nvidia_smi(sample("nvidia-smi-two-gpus.csv"))

    assert gpus == [
        Accelerator(
            kind="gpu",
            index=0,
            name="NVIDIA GeForce RTX 3090",
            util_percent=37.0,
            mem_used_bytes=10240 * MIB,
            mem_total_bytes=24576 * MIB,
        ),
        Accelerator(
            kind="gpu",
            index=1,
            name="NVIDIA A100-SXM4-40GB",
            util_percent=0.0,
            mem_used_bytes=4 * MIB,
            mem_total_bytes=40960 * MIB,
        ),
    ]


def test_nvidia_smi_unsupported_values_unknown():
    (gpu,) = parse_nvidia_smi(sample("nvidia-smi-not-supported.csv"))

    assert gpu.name == "NVIDIA T4"
    assert gpu.util_percent is None
    assert gpu.mem_used_bytes is None
    assert gpu.mem_total_bytes == 15360 * MIB


def test_tegrastats_orin_line():
    (gpu,) = parse_tegrastats(sample("tegrastats-orin.txt"))

    assert gpu.kind == "gpu"
    assert gpu.index == 0
    assert gpu.util_percent == 12.0
    assert gpu.mem_used_bytes == 2875 * MIB
    assert gpu.mem_total_bytes == 30536 * MIB


def test_tegrastats_without_ram_field():
    (gpu,) = parse_tegrastats("GR3D_FREQ 99%@1300 EMC_FREQ 4%")

    assert gpu.util_percent == 99.0
    assert gpu.mem_used_bytes is None
    assert gpu.mem_total_bytes is None


def test_jetson_gpu_load_file():
    (gpu,) = parse_gpu_load(sample("jetson-gpu-load.txt"))

    assert gpu.util_percent == pytest.approx(12.3)
    assert gpu.mem_total_bytes is None


def test_rknpu_three_cores():
    cores = parse_rknpu_load(sample("rknpu-load-rk3588.txt"))

    assert [(core.index, core.util_percent) for core in cores] == [
        (0, 12.0),
        (1, 0.0),
        (2, 0.0),
    ]
    assert {core.kind for core in cores} == {"npu"}
    assert cores[0].name == "RK3588 NPU core 0"


def test_rknpu_single_core_driver():
    (core,) = parse_rknpu_load(sample("rknpu-load-single.txt"))

    assert core.index == 0
    assert core.util_percent == 25.0


def test_npu_smi_310b_one_chip():
    (chip,) = parse_npu_smi(sample("npu-smi-310b.txt"))

    assert chip == Accelerator(
        kind="npu",
        index=0,
        name="310B1",
        util_percent=0.0,
        mem_used_bytes=957 * MIB,
        mem_total_bytes=10810 * MIB,
    )


def test_npu_smi_four_chips_skip_processes():
    chips = parse_npu_smi(sample("npu-smi-310p-four-chips.txt"))

    assert [chip.index for chip in chips] == [0, 1, 2, 3]
    assert [chip.util_percent for chip in chips] == [21.0, 0.0, 64.0, 0.0]
    assert chips[2].mem_used_bytes == 9012 * MIB
    assert {chip.mem_total_bytes for chip in chips} == {21527 * MIB}
    assert {chip.name for chip in chips} == {"310P3"}


def test_npu_smi_910b_reports_hbm():
    chips = parse_npu_smi(sample("npu-smi-910b-hbm.txt"))

    assert [chip.index for chip in chips] == [0, 1]
    assert chips[0].util_percent == 45.0
    assert chips[0].mem_used_bytes == 28450 * MIB
    assert chips[0].mem_total_bytes == 65536 * MIB
    assert chips[1].mem_used_bytes == 3374 * MIB


PARSERS = [parse_nvidia_smi, parse_tegrastats, parse_gpu_load, parse_rknpu_load]
PARSERS += [parse_npu_smi]
MALFORMED = [
    "",
    "\n\n",
    sample("npu-smi-driver-error.txt"),
    "garbage, with, commas\n",
    "0, name, x, y\n",
    "| a | b |\n| c | d | e |\n",
    "NPU load: Core0: %,",
    "GR3D_FREQ",
    "-5\n",
    "1500\n",
]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda parse: parse.__name__)
@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_output_gives_no_accelerator(parse, text):
    assert parse(text) == []


@pytest.mark.parametrize(
    "name",
    [
        "nvidia-smi-two-gpus.csv",
        "tegrastats-orin.txt",
        "rknpu-load-rk3588.txt",
        "npu-smi-910b-hbm.txt",
    ],
)
def test_truncated_samples_do_not_crash(name):
    text = sample(name)

    for end in range(0, len(text), 7):
        for parse in PARSERS:
            assert isinstance(parse(text[:end]), list)
