//! The built-in GPU models and where every figure comes from.
//!
//! Rules for this table:
//! * TDP, memory, bandwidth and BF16 throughput come from the vendor's datasheet.
//!   Datasheets quote tensor throughput "with sparsity"; the dense figure is half of it.
//! * The minimum power limit comes from a public `nvidia-smi -q -d POWER` output or an
//!   NVIDIA manual where one exists. Otherwise it is an **assumption**, said so, and chosen
//!   high (a higher floor means gigawatt never plans a cap the driver would refuse).
//! * Idle draw is rarely published. Where a public reading exists it is cited and rounded
//!   up; otherwise it is an **assumption**, said so, and chosen high (a higher idle draw
//!   over-reserves, it never overdraws a budget).

use gigawatt_units::Watts;

use super::GpuSpec;

/// `α` in "dynamic power ∝ clock^α", the same for every built-in model.
///
/// Derived from public datasheets, then rounded down to be pessimistic: the H100 PCIe and
/// H100 SXM carry the same GH100 die. At 350 W the PCIe board is specified at 756.5 dense
/// BF16 TFLOPS with 114 SMs, the SXM at 700 W at 989.5 TFLOPS with 132 SMs: per SM, 89% of
/// the throughput for (350 − 80) / (700 − 80) = 44% of the dynamic power, which gives
/// α = ln 0.44 / ln 0.89 ≈ 7 at the boost clocks the datasheets quote. Sustained clocks
/// are lower and voltage stops falling at the bottom of the range, so a far smaller α is
/// assumed: 2, under which halving the dynamic power costs 29% of the clock (α = 7 would
/// say 9%). A smaller α overstates what caps cost, never understates it.
pub(crate) const DVFS_EXPONENT: f64 = 2.0;

struct Row {
    id: &'static str,
    aliases: &'static [&'static str],
    vendor: &'static str,
    tdp_w: u64,
    idle_w: u64,
    min_power_limit_w: u64,
    memory_gb: u32,
    bf16_dense_tflops: Option<f64>,
    hbm_tbps: Option<f64>,
    source: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        id: "H100-SXM",
        aliases: &["H100", "H100-SXM5", "H100-SXM5-80GB", "H100-80GB-HBM3"],
        vendor: "NVIDIA",
        // NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column: "Max TDP up to 700W".
        tdp_w: 700,
        // Public readings of idle H100 SXM: 64.4 W (Redfish example in NVIDIA DGX user
        // guide, "Managing Power Capping") and 78.8 W (nvidia-smi -q -d POWER in
        // github.com/stackhpc/ansible-slurm-appliance PR #975). Rounded up to 80 W.
        idle_w: 80,
        // Same two sources: AllowableMin 200 / "Min Power Limit: 200.00 W".
        min_power_limit_w: 200,
        // Datasheet: 80 GB HBM3, 3.35 TB/s.
        memory_gb: 80,
        // Datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity → 989.5 dense.
        bf16_dense_tflops: Some(989.5),
        hbm_tbps: Some(3.35),
        source: "NVIDIA H100 datasheet (SXM); min limit and idle from NVIDIA DGX user guide \
                 Redfish example and public nvidia-smi output",
    },
    Row {
        id: "H100-PCIE",
        aliases: &["H100-PCIe-80GB"],
        vendor: "NVIDIA",
        // NVIDIA H100 PCIe product brief PB-11133-001: "maximum thermal design power (TDP)
        // level of 350 W".
        tdp_w: 350,
        // Assumption: 50 W (≈14% of TDP), no public figure found; chosen high.
        idle_w: 50,
        // Assumption: 200 W, the H100 SXM floor; no public PCIe reading found.
        min_power_limit_w: 200,
        // Product brief: 80 GB HBM2e, "greater than 2,000 gigabytes per second".
        memory_gb: 80,
        // NVIDIA H100 datasheet, PCIe column: BF16 1,513 TFLOPS with sparsity → 756.5 dense.
        bf16_dense_tflops: Some(756.5),
        hbm_tbps: Some(2.0),
        source: "NVIDIA H100 PCIe product brief PB-11133-001 and H100 datasheet; idle and min \
                 limit are assumptions",
    },
    Row {
        id: "H200-SXM",
        aliases: &["H200", "H200-141GB"],
        vendor: "NVIDIA",
        // NVIDIA H200 Tensor Core GPU datasheet, SXM column: "Max TDP up to 700W".
        tdp_w: 700,
        // Assumption: same board and HGX platform as H100 SXM, so its 80 W idle.
        idle_w: 80,
        // Assumption: the H100 SXM floor (200 W), same HGX power-capping interface.
        min_power_limit_w: 200,
        // Datasheet: 141 GB HBM3e at 4.8 TB/s.
        memory_gb: 141,
        // Datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity → 989.5 dense.
        bf16_dense_tflops: Some(989.5),
        hbm_tbps: Some(4.8),
        source: "NVIDIA H200 datasheet (SXM); idle and min limit assumed equal to H100 SXM",
    },
    Row {
        id: "B200",
        aliases: &["B200-SXM", "HGX-B200"],
        vendor: "NVIDIA",
        // NVIDIA HGX B200 / DGX B200 documentation: GPUs configurable up to 1,000 W each.
        tdp_w: 1000,
        // Assumption: 140 W (14% of TDP, the H100 SXM idle ratio rounded up).
        idle_w: 140,
        // Assumption: 400 W (40% of TDP; H100 SXM is 29%, V100 50%).
        min_power_limit_w: 400,
        // NVIDIA DGX B200 user guide: "8 x NVIDIA B200 GPUs that provide 1,440 GB total GPU
        // memory" → 180 GB each.
        memory_gb: 180,
        // NVIDIA HGX B200 specifications: FP16/BF16 Tensor Core 36 PFLOPS for 8 GPUs with
        // sparsity → 4.5 PFLOPS sparse, 2,250 TFLOPS dense per GPU.
        bf16_dense_tflops: Some(2250.0),
        // NVIDIA DGX B200 datasheet: 64 TB/s HBM3e for 8 GPUs → 8 TB/s each.
        hbm_tbps: Some(8.0),
        source: "NVIDIA HGX B200 specifications and DGX B200 user guide; idle and min limit \
                 are assumptions",
    },
    Row {
        id: "GB200",
        aliases: &["GB200-NVL72", "B200-GB200"],
        vendor: "NVIDIA",
        // Per *GPU* in a GB200 superchip. NVIDIA publishes no per-GPU TDP; it presented the
        // GB200 superchip (1 Grace + 2 Blackwell GPUs) at up to 2,700 W (GTC 2024,
        // reported by AnandTech and ServeTheHome), i.e. 2 × 1,200 W GPUs + ~300 W Grace.
        // 1,200 W per GPU is also the figure in vendors' NVL72 rack power budgets.
        tdp_w: 1200,
        // Assumption: 170 W (14% of TDP, as for B200).
        idle_w: 170,
        // Assumption: 400 W, as for B200.
        min_power_limit_w: 400,
        // NVIDIA GB200 NVL72 specifications: 13.4 TB HBM3e for 72 GPUs → 186 GB each.
        memory_gb: 186,
        // NVIDIA GB200 NVL72 specifications: FP16/BF16 Tensor Core 360 PFLOPS for 72 GPUs
        // with sparsity → 5 PFLOPS sparse, 2,500 TFLOPS dense per GPU.
        bf16_dense_tflops: Some(2500.0),
        // NVIDIA GB200 NVL72 specifications: 576 TB/s for 72 GPUs → 8 TB/s each.
        hbm_tbps: Some(8.0),
        source: "NVIDIA GB200 NVL72 specifications (per-GPU share); 1,200 W per GPU from the \
                 2,700 W GB200 superchip figure (GTC 2024); idle and min limit are assumptions",
    },
    Row {
        id: "MI300X",
        aliases: &["Instinct-MI300X", "AMD-MI300X"],
        vendor: "AMD",
        // AMD Instinct MI300X accelerator data sheet: total board power 750 W.
        tdp_w: 750,
        // Assumption: 150 W (20% of TDP; eight HBM3 stacks and a large package idle high).
        idle_w: 150,
        // Assumption: 300 W (40% of TDP); rocm-smi refuses caps below ~290 W even on the
        // 300 W MI100 (github.com/ROCm/rocm_smi_lib issue #190), so a high floor is prudent.
        min_power_limit_w: 300,
        // Data sheet: 192 GB HBM3, 5.3 TB/s peak bandwidth.
        memory_gb: 192,
        // Data sheet: peak BF16 1,307.4 TFLOPS dense (2,614.9 with sparsity).
        bf16_dense_tflops: Some(1307.4),
        hbm_tbps: Some(5.3),
        source: "AMD Instinct MI300X data sheet; idle and min limit are assumptions",
    },
    Row {
        id: "A100-SXM",
        aliases: &["A100", "A100-SXM4", "A100-SXM4-80GB", "A100-80GB"],
        vendor: "NVIDIA",
        // NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM column: max TDP 400 W.
        tdp_w: 400,
        // Assumption: 60 W (15% of TDP); no authoritative public reading found.
        idle_w: 60,
        // nvidia-smi -q of an A100 SXM: "Default Power Limit: 400.00 W, Min Power Limit:
        // 100.00 W" (github.com/NVIDIA/DCGM issue #152).
        min_power_limit_w: 100,
        // Datasheet: 80 GB HBM2e, 2,039 GB/s.
        memory_gb: 80,
        // Datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity).
        bf16_dense_tflops: Some(312.0),
        hbm_tbps: Some(2.039),
        source: "NVIDIA A100 datasheet (80GB SXM); min limit from public nvidia-smi output \
                 (NVIDIA/DCGM #152); idle is an assumption",
    },
    Row {
        id: "V100-SXM2-16GB",
        aliases: &["V100M16", "V100-16GB", "V100-SXM2-16G"],
        vendor: "NVIDIA",
        // NVIDIA Tesla V100 datasheet, SXM2 column: max power consumption 300 W.
        tdp_w: 300,
        // nvidia-smi -q of a V100 SXM2 with no work shows 57.4 W (github.com/NVIDIA/
        // nvidia-docker issue #1076); rounded up to 60 W.
        idle_w: 60,
        // Same output: "Min Power Limit: 150.00 W, Max Power Limit: 300.00 W".
        min_power_limit_w: 150,
        // Datasheet: 16 GB HBM2, 900 GB/s.
        memory_gb: 16,
        // Volta has no BF16 tensor cores.
        bf16_dense_tflops: None,
        hbm_tbps: Some(0.9),
        source: "NVIDIA Tesla V100 datasheet (SXM2); idle and min limit from public nvidia-smi \
                 output (NVIDIA/nvidia-docker #1076)",
    },
    Row {
        id: "V100-SXM2-32GB",
        aliases: &["V100M32", "V100-32GB", "V100-SXM2-32G"],
        vendor: "NVIDIA",
        // NVIDIA Tesla V100 datasheet, SXM2 column: 300 W; the 32 GB part has the same
        // board power.
        tdp_w: 300,
        // As for the 16 GB part (same GPU, same board).
        idle_w: 60,
        min_power_limit_w: 150,
        // Datasheet: 32 GB HBM2, 900 GB/s.
        memory_gb: 32,
        bf16_dense_tflops: None,
        hbm_tbps: Some(0.9),
        source: "NVIDIA Tesla V100 datasheet (SXM2 32GB); idle and min limit as V100 SXM2 16GB",
    },
    Row {
        id: "P100-PCIE",
        aliases: &["P100", "P100-PCIe-16GB", "Tesla-P100"],
        vendor: "NVIDIA",
        // PCIe rather than SXM2: the Alibaba openb trace puts 1 or 2 P100s in a node, the
        // shape of PCIe servers (SXM2 P100s come on 4- or 8-GPU NVLink boards).
        // NVIDIA Tesla P100 PCIe datasheet: max power consumption 250 W.
        tdp_w: 250,
        // Assumption: 30 W (12% of TDP); no public reading found.
        idle_w: 30,
        // Assumption: 125 W (50% of TDP, the V100 ratio).
        min_power_limit_w: 125,
        // Datasheet: 16 GB CoWoS HBM2 at 732 GB/s (the 12 GB variant has 549 GB/s).
        memory_gb: 16,
        // Pascal has no BF16 tensor cores.
        bf16_dense_tflops: None,
        hbm_tbps: Some(0.732),
        source: "NVIDIA Tesla P100 PCIe datasheet (16GB); idle and min limit are assumptions",
    },
    Row {
        id: "T4",
        aliases: &["Tesla-T4", "T4-16GB"],
        vendor: "NVIDIA",
        // NVIDIA T4 datasheet: max power consumption 70 W.
        tdp_w: 70,
        // Public nvidia-smi of an idle T4 shows ~15 W at P0; assumption 20 W (rounded up).
        idle_w: 20,
        // Assumption: 60 W; the T4 board allows little capping range below its 70 W.
        min_power_limit_w: 60,
        // Datasheet: 16 GB GDDR6, 320+ GB/s.
        memory_gb: 16,
        // Turing has no BF16 tensor cores (FP16 65 TFLOPS).
        bf16_dense_tflops: None,
        hbm_tbps: Some(0.32),
        source: "NVIDIA T4 datasheet; idle and min limit are assumptions",
    },
    Row {
        id: "A10",
        aliases: &["A10-24GB", "NVIDIA-A10"],
        vendor: "NVIDIA",
        // NVIDIA A10 datasheet: max thermal design power 150 W.
        tdp_w: 150,
        // Assumption: 25 W (≈17% of TDP); no public reading found.
        idle_w: 25,
        // Assumption: 100 W (⅔ of TDP); single-slot PCIe boards allow little range.
        min_power_limit_w: 100,
        // Datasheet: 24 GB GDDR6, 600 GB/s.
        memory_gb: 24,
        // Datasheet: BF16 Tensor Core 125 TFLOPS (250 with sparsity).
        bf16_dense_tflops: Some(125.0),
        hbm_tbps: Some(0.6),
        source: "NVIDIA A10 datasheet; idle and min limit are assumptions",
    },
];

/// The built-in models, each with its aliases.
pub(super) fn models() -> Vec<(GpuSpec, &'static [&'static str])> {
    ROWS.iter()
        .map(|r| {
            let spec = GpuSpec {
                id: r.id.to_owned(),
                vendor: r.vendor.to_owned(),
                tdp: Watts(r.tdp_w),
                idle: Watts(r.idle_w),
                min_power_limit: Watts(r.min_power_limit_w),
                memory_gb: r.memory_gb,
                bf16_dense_tflops: r.bf16_dense_tflops,
                hbm_tbps: r.hbm_tbps,
                dvfs_exponent: DVFS_EXPONENT,
                source: r.source.to_owned(),
                builtin: true,
            };
            (spec, r.aliases)
        })
        .collect()
}
