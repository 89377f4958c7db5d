//! A roofline model of LLM inference latency on GPUs, with power caps.
//!
//! The power experiment (`gigawatt sim power`) needs to know how long a prompt (prefill) and
//! one generated token (a decode step) take on a replica of an LLM, and how much longer
//! they take when a power limit lowers the SM clock. This module answers with the simplest
//! model that is honest about both: a *roofline*. Every phase of work needs some
//! floating-point operations and some bytes from HBM; it takes as long as the slower of the
//! two, plus a fixed overhead:
//!
//! ```text
//! compute  = FLOPs / (gpus × peak FLOPS × MFU) / clock
//! memory   = bytes / (gpus × HBM bandwidth × MBU)
//! time     = max(compute, memory) + overhead
//! ```
//!
//! Only the compute term divides by the clock: a power limit lowers the SM clock, but HBM
//! bandwidth does not follow it (see `gigawatt_power::model`). So a cap stretches prefill,
//! which is compute-bound, and leaves decode alone while decode stays memory-bound. The
//! `clock` argument of every function is [`GpuPower::clock_ratio`] for the phase's activity
//! and the limit in force, 1 without a cap.
//!
//! The pieces:
//!
//! * [`LlmSpec`]: the transformer (parameters, layers, attention shape, bytes per weight
//!   and per KV element), with [`LlmSpec::llama2_70b_fp8`];
//! * [`ReplicaSpec`]: the GPUs that serve one copy of it (tensor-parallel degree, peak
//!   FLOPS at the precision used, HBM bandwidth and memory), built from the catalog;
//! * [`Efficiency`]: how much of the peak real kernels reach, and the fixed overheads;
//! * [`LatencyModel`]: the three together, validated, with the latency functions.
//!
//! `docs/inference-model.md` gives the formulas, the source of every default and the check
//! against published TensorRT-LLM measurements. Everything here is pure arithmetic: no I/O,
//! no clock, no randomness.
//!
//! [`GpuPower::clock_ratio`]: gigawatt_power::model::GpuPower::clock_ratio

use gigawatt_fleet::GpuSpec;
use gigawatt_units::Seconds;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a model, a replica or a set of efficiencies was refused. Every message names the
/// figure at fault and what would fix it, because these figures come from users.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InferenceError {
    /// A figure is out of its range.
    #[error("{field} {problem}")]
    Invalid {
        /// The figure, e.g. `llm.layers`.
        field: String,
        /// What is wrong with it, with the value given.
        problem: String,
    },
    /// The GPU model lacks a figure the roofline needs.
    #[error(
        "GPU `{gpu}` has no {figure} figure in the catalog; declare it for the model or build \
         the ReplicaSpec by hand"
    )]
    MissingFigure {
        /// The GPU model's id.
        gpu: String,
        /// The missing figure (`bf16_dense_tflops` or `hbm_tbps`).
        figure: &'static str,
    },
    /// FP8 was asked of a GPU that gigawatt does not know to have FP8 tensor cores.
    #[error(
        "GPU `{gpu}` has no FP8 tensor cores that gigawatt knows of (FP8 is known for {known}); \
         use Precision::Bf16, or build the ReplicaSpec by hand with the GPU's dense FP8 peak"
    )]
    NoFp8 {
        /// The GPU model's id.
        gpu: String,
        /// The models known to have FP8, comma-separated.
        known: String,
    },
    /// The weights do not fit in the replica's memory.
    #[error(
        "{model} needs {weights_gb:.1} GB of weights but {gpus} × {gpu} offer {usable_gb:.1} GB \
         after the {reserve_pct:.0}% reserve; use more GPUs per replica or fewer bytes per weight"
    )]
    DoesNotFit {
        /// The LLM's name.
        model: String,
        /// Its weights in GB (10^9 bytes).
        weights_gb: f64,
        /// GPUs in the replica.
        gpus: u32,
        /// The GPU model's id.
        gpu: String,
        /// Memory of the replica after the reserve, in GB.
        usable_gb: f64,
        /// The reserve, in percent.
        reserve_pct: f64,
    },
}

fn invalid(field: &str, problem: String) -> InferenceError {
    InferenceError::Invalid { field: field.to_string(), problem }
}

fn at_least_one(field: &str, v: u64) -> Result<(), InferenceError> {
    if v == 0 { Err(invalid(field, "must be at least 1 (got 0)".into())) } else { Ok(()) }
}

fn positive(field: &str, v: f64) -> Result<(), InferenceError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be a positive, finite number (got {v})")))
    }
}

fn share(field: &str, v: f64) -> Result<(), InferenceError> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be a share in (0, 1] (got {v})")))
    }
}

/// A dense, decoder-only transformer, as far as its inference cost goes.
///
/// Only the figures that decide FLOPs and bytes are here. Parameter count drives both the
/// matmul FLOPs (2 per parameter per token) and the bytes read per forward pass; the
/// attention shape drives the KV cache, which decode must read in full at every step and
/// which bounds how many tokens a replica can hold. Mixture-of-experts models are not
/// dense and do not fit this description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    /// A name for messages and reports, e.g. `Llama-2-70B (FP8)`.
    pub name: String,
    /// Parameters, embeddings included.
    pub params: u64,
    /// Transformer blocks.
    pub layers: u32,
    /// Model (residual stream) width.
    pub hidden: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads: fewer than `heads` under grouped-query attention (GQA), which is
    /// what keeps the KV cache of a 70B model small.
    pub kv_heads: u32,
    /// Width of one head.
    pub head_dim: u32,
    /// Bytes per weight: 1 for FP8, 2 for BF16, 0.5 for 4-bit.
    pub bytes_per_weight: f64,
    /// Bytes per element of the KV cache: 1 for an FP8 cache, 2 for BF16.
    pub bytes_per_kv: f64,
}

impl LlmSpec {
    /// Llama 2 70B with FP8 weights and an FP8 KV cache, as TensorRT-LLM serves it in the
    /// measurements that `docs/inference-model.md` checks the model against.
    ///
    /// Shape from the Hugging Face config of `meta-llama/Llama-2-70b-hf` (80 layers, hidden
    /// 8192, 64 heads, 8 KV heads, intermediate 28672, vocabulary 32000) and the Llama 2
    /// paper (Touvron et al. 2023, Table 1: GQA for 70B). The parameter count follows from
    /// that shape: per layer 2·8192² (Q, O) + 2·8192·1024 (K, V) + 3·8192·28672 (MLP) +
    /// 2·8192 (norms) = 855,654,400; × 80, plus 2·32000·8192 (embedding and untied output
    /// head) and 8192 (final norm) = 68,976,648,192, the "70B" of the name.
    #[must_use]
    pub fn llama2_70b_fp8() -> LlmSpec {
        LlmSpec {
            name: "Llama-2-70B (FP8)".to_string(),
            params: 68_976_648_192,
            layers: 80,
            hidden: 8192,
            heads: 64,
            kv_heads: 8,
            head_dim: 128,
            bytes_per_weight: 1.0,
            bytes_per_kv: 1.0,
        }
    }

    /// Checks every figure; the message names the first one out of range.
    ///
    /// # Errors
    /// [`InferenceError::Invalid`] for a zero count, a non-positive size, more KV heads
    /// than query heads, or query heads that KV heads do not divide.
    pub fn validate(&self) -> Result<(), InferenceError> {
        if self.name.trim().is_empty() {
            return Err(invalid("llm.name", "must not be empty".into()));
        }
        at_least_one("llm.params", self.params)?;
        at_least_one("llm.layers", self.layers.into())?;
        at_least_one("llm.hidden", self.hidden.into())?;
        at_least_one("llm.heads", self.heads.into())?;
        at_least_one("llm.kv_heads", self.kv_heads.into())?;
        at_least_one("llm.head_dim", self.head_dim.into())?;
        positive("llm.bytes_per_weight", self.bytes_per_weight)?;
        positive("llm.bytes_per_kv", self.bytes_per_kv)?;
        if self.kv_heads > self.heads || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(invalid(
                "llm.kv_heads",
                format!(
                    "must divide llm.heads (got {} KV heads for {} query heads)",
                    self.kv_heads, self.heads
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of all weights: what every forward pass reads from HBM once.
    #[must_use]
    pub fn weight_bytes(&self) -> f64 {
        self.params as f64 * self.bytes_per_weight
    }

    /// Bytes of KV cache one token occupies: a key and a value vector per KV head per
    /// layer, `2 × layers × kv_heads × head_dim × bytes_per_kv` (163,840 bytes for Llama 2
    /// 70B with an FP8 cache).
    #[must_use]
    pub fn kv_bytes_per_token(&self) -> f64 {
        2.0 * f64::from(self.layers) * f64::from(self.kv_heads) * f64::from(self.head_dim) * self.bytes_per_kv
    }

    /// Matmul FLOPs per token: 2 per parameter (a multiply and an add). The embedding
    /// lookup is no matmul but is counted as one, which overstates Llama 2 70B by 0.4%.
    #[must_use]
    pub fn dense_flops_per_token(&self) -> f64 {
        2.0 * self.params as f64
    }

    /// Attention FLOPs for `pairs` (query, key) pairs: `Q·Kᵀ` and `softmax·V` each cost 2
    /// FLOPs per pair per query-head dimension per layer, so `4 × layers × heads ×
    /// head_dim` per pair.
    #[must_use]
    pub fn attention_flops(&self, pairs: u64) -> f64 {
        4.0 * f64::from(self.layers) * f64::from(self.heads) * f64::from(self.head_dim) * pairs as f64
    }

    /// FLOPs to prefill one prompt of `tokens` tokens from an empty cache: the matmuls,
    /// `2 × params × tokens`, plus causal attention, `≈ 2 × layers × tokens² × hidden`
    /// (1.9% of the total at 2,048 tokens for Llama 2 70B, 7.2% at 8,192).
    #[must_use]
    pub fn prefill_flops(&self, tokens: u64) -> f64 {
        self.dense_flops_per_token() * tokens as f64 + self.attention_flops(causal_pairs(0, tokens))
    }
}

/// (query, key) pairs of causal attention for `new` tokens after `cached` ones: each new
/// token attends to every cached token and to the new ones up to itself.
fn causal_pairs(cached: u64, new: u64) -> u64 {
    let own = new.saturating_mul(new.saturating_add(1)) / 2;
    new.saturating_mul(cached).saturating_add(own)
}

/// The number format of the weights and activations of the matmuls, which decides the
/// tensor-core peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP8 (E4M3) matmuls: twice the BF16 peak on GPUs with FP8 tensor cores.
    Fp8,
    /// BF16 (or FP16) matmuls.
    Bf16,
}

/// Catalog models whose dense FP8 tensor peak is twice their dense BF16 peak: NVIDIA H100
/// and H200 datasheets (FP8 3,958 vs BF16 1,979 TFLOPS with sparsity, so 1,979 vs 989.5
/// dense), HGX B200 and GB200 NVL72 specifications (FP8 twice FP16/BF16), AMD MI300X data
/// sheet (FP8 2,614.9 vs BF16 1,307.4 TFLOPS dense). A100, V100, P100, T4 and A10 have no
/// FP8 tensor cores.
const FP8_CAPABLE: &[&str] = &["H100-SXM", "H100-PCIE", "H200-SXM", "B200", "GB200", "MI300X"];

/// The GPUs that serve one copy of the model with tensor parallelism.
///
/// Tensor parallelism splits every matrix across `gpus` GPUs, so for the roofline a replica
/// is one GPU with `gpus` times the FLOPS, bandwidth and memory; the cost of the
/// all-reduces that the split needs is folded into [`Efficiency`]'s overheads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSpec {
    /// The GPU model's id, for messages.
    pub gpu: String,
    /// GPUs in the replica: the tensor-parallel degree.
    pub gpus: u32,
    /// Dense (no sparsity) tensor FLOP/s of one GPU at the precision used.
    pub peak_flops: f64,
    /// HBM bytes/s of one GPU.
    pub hbm_bytes_per_s: f64,
    /// Memory of one GPU in bytes.
    pub memory_bytes: f64,
    /// Share of memory kept free of weights and KV cache for activations, workspaces and
    /// the CUDA context. Default 0.10: vLLM's default `gpu_memory_utilization` is 0.9.
    pub memory_reserve: f64,
}

impl ReplicaSpec {
    /// The default [`memory_reserve`](Self::memory_reserve).
    pub const DEFAULT_MEMORY_RESERVE: f64 = 0.10;

    /// A replica of `gpus` GPUs of the catalog model `gpu` running matmuls at `precision`,
    /// with the default memory reserve. The FP8 peak is twice the catalog's BF16 figure,
    /// for the models known to have FP8 tensor cores.
    ///
    /// ```
    /// use gigawatt_fleet::GpuCatalog;
    /// use gigawatt_sim::inference::{Precision, ReplicaSpec};
    /// let catalog = GpuCatalog::builtin();
    /// let h100 = catalog.get("H100").expect("built in");
    /// let r = ReplicaSpec::new(h100, Precision::Fp8, 4)?;
    /// assert_eq!(r.peak_flops, 1979e12); // NVIDIA H100 SXM datasheet, FP8 dense
    /// assert!(ReplicaSpec::new(catalog.get("A100").expect("built in"), Precision::Fp8, 4).is_err());
    /// # Ok::<(), gigawatt_sim::inference::InferenceError>(())
    /// ```
    ///
    /// # Errors
    /// [`InferenceError::Invalid`] for `gpus` = 0, [`InferenceError::MissingFigure`] when
    /// the catalog lacks the BF16 peak or the bandwidth, [`InferenceError::NoFp8`] for FP8
    /// on a GPU without it.
    pub fn new(gpu: &GpuSpec, precision: Precision, gpus: u32) -> Result<ReplicaSpec, InferenceError> {
        at_least_one("replica.gpus", gpus.into())?;
        let missing = |figure| InferenceError::MissingFigure { gpu: gpu.id.clone(), figure };
        let bf16 = gpu.bf16_dense_tflops.ok_or_else(|| missing("bf16_dense_tflops"))?;
        let tbps = gpu.hbm_tbps.ok_or_else(|| missing("hbm_tbps"))?;
        let tflops = match precision {
            Precision::Bf16 => bf16,
            Precision::Fp8 if FP8_CAPABLE.contains(&gpu.id.as_str()) => 2.0 * bf16,
            Precision::Fp8 => {
                return Err(InferenceError::NoFp8 { gpu: gpu.id.clone(), known: FP8_CAPABLE.join(", ") });
            }
        };
        let replica = ReplicaSpec {
            gpu: gpu.id.clone(),
            gpus,
            peak_flops: tflops * 1e12,
            hbm_bytes_per_s: tbps * 1e12,
            memory_bytes: f64::from(gpu.memory_gb) * 1e9,
            memory_reserve: Self::DEFAULT_MEMORY_RESERVE,
        };
        replica.validate()?;
        Ok(replica)
    }

    /// Checks every figure; the message names the first one out of range.
    ///
    /// # Errors
    /// [`InferenceError::Invalid`] for zero GPUs, a non-positive peak, bandwidth or
    /// memory, or a reserve outside `[0, 1)`.
    pub fn validate(&self) -> Result<(), InferenceError> {
        at_least_one("replica.gpus", self.gpus.into())?;
        positive("replica.peak_flops", self.peak_flops)?;
        positive("replica.hbm_bytes_per_s", self.hbm_bytes_per_s)?;
        positive("replica.memory_bytes", self.memory_bytes)?;
        if !(self.memory_reserve.is_finite() && (0.0..1.0).contains(&self.memory_reserve)) {
            return Err(invalid(
                "replica.memory_reserve",
                format!("must be a share in [0, 1) (got {})", self.memory_reserve),
            ));
        }
        Ok(())
    }

    /// Bytes of the replica's memory that weights and KV cache may use.
    #[must_use]
    pub fn usable_bytes(&self) -> f64 {
        f64::from(self.gpus) * self.memory_bytes * (1.0 - self.memory_reserve)
    }

    /// KV-cache bytes the replica holds per token of context. When the replica has more
    /// GPUs than the model has KV heads, each KV head is stored on several GPUs, so a token
    /// costs more than [`LlmSpec::kv_bytes_per_token`].
    #[must_use]
    pub fn kv_bytes_per_token(&self, llm: &LlmSpec) -> f64 {
        let copies = self.gpus.div_ceil(llm.kv_heads.max(1)).max(1);
        llm.kv_bytes_per_token() * f64::from(copies)
    }

    /// Tokens of context the replica can hold in its KV cache: the usable memory left after
    /// the weights, divided by the bytes per token; 0 when the weights do not fit.
    #[must_use]
    pub fn kv_capacity_tokens(&self, llm: &LlmSpec) -> u64 {
        let free = self.usable_bytes() - llm.weight_bytes();
        let per_token = self.kv_bytes_per_token(llm);
        if free <= 0.0 || per_token <= 0.0 { 0 } else { (free / per_token).floor() as u64 }
    }
}

/// How close real kernels come to the hardware's peaks, and what each forward pass costs
/// beyond its FLOPs and bytes.
///
/// The defaults are calibrated on one published measurement, TensorRT-LLM's first-token
/// latency of Llama 2 70B on 4 × H100 SXM in FP8 (26 ms at 128 prompt tokens, 109 ms at
/// 2,048), with `mbu` and `decode_step_overhead` assumed; `docs/inference-model.md` shows
/// the calibration and how the defaults fare on the other measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Efficiency {
    /// Model FLOPs utilisation: the share of the dense tensor peak the matmuls reach, in
    /// prefill and in the compute side of decode alike.
    pub mfu: f64,
    /// Model bandwidth utilisation: the share of the HBM peak reached when reading weights
    /// and KV cache.
    pub mbu: f64,
    /// Fixed time per prefill batch: kernel launches, the tensor-parallel all-reduces'
    /// latency, small-batch matmuls that reach less than `mfu`, and sampling.
    pub prefill_overhead: Seconds,
    /// Fixed time per decode step, for the same reasons.
    pub decode_step_overhead: Seconds,
}

impl Default for Efficiency {
    fn default() -> Efficiency {
        Efficiency {
            // Calibrated: the first-token latency at 2,048 prompt tokens less the overhead
            // (docs/inference-model.md, "Calibration"); solves to 0.405.
            mfu: 0.40,
            // Assumption: no engine reaches the HBM peak; 0.75 is not fitted to any
            // measurement. The calibration of the other two depends on it, mildly.
            mbu: 0.75,
            // Calibrated: the first-token latency at 128 tokens less its weight-read time;
            // solves to 19.1 ms.
            prefill_overhead: Seconds(0.019),
            // Assumption: 160 tensor-parallel all-reduces (2 per layer) and the launches
            // and sampling of one step; no published figure isolates it.
            decode_step_overhead: Seconds(0.003),
        }
    }
}

impl Efficiency {
    /// Checks every figure; the message names the first one out of range.
    ///
    /// # Errors
    /// [`InferenceError::Invalid`] for a utilisation outside `(0, 1]` or a negative or
    /// non-finite overhead.
    pub fn validate(&self) -> Result<(), InferenceError> {
        share("efficiency.mfu", self.mfu)?;
        share("efficiency.mbu", self.mbu)?;
        for (field, v) in [
            ("efficiency.prefill_overhead", self.prefill_overhead),
            ("efficiency.decode_step_overhead", self.decode_step_overhead),
        ] {
            if !(v.0.is_finite() && v.0 >= 0.0) {
                return Err(invalid(field, format!("must be a finite, non-negative time (got {} s)", v.0)));
            }
        }
        Ok(())
    }
}

/// The work of one prefill batch: its new tokens and the attention among them.
///
/// The matmul work depends only on the number of tokens, but attention grows with the
/// square of each prompt's length, so a batch of 96 prompts of 2,048 tokens costs far less
/// attention than one prompt of 196,608. The batch therefore keeps the (query, key) pairs
/// of each prompt or chunk it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefillBatch {
    tokens: u64,
    pairs: u64,
}

impl PrefillBatch {
    /// A batch of one whole prompt.
    #[must_use]
    pub fn prompt(tokens: u64) -> PrefillBatch {
        let mut b = PrefillBatch::default();
        b.add_prompt(tokens);
        b
    }

    /// A batch of whole prompts.
    #[must_use]
    pub fn prompts(lengths: impl IntoIterator<Item = u64>) -> PrefillBatch {
        let mut b = PrefillBatch::default();
        for t in lengths {
            b.add_prompt(t);
        }
        b
    }

    /// Adds a whole prompt of `tokens` tokens.
    pub fn add_prompt(&mut self, tokens: u64) {
        self.add_chunk(tokens, 0);
    }

    /// Adds a chunk of `new` prompt tokens whose first `cached` tokens are already in the
    /// KV cache (chunked prefill, or a prompt that extends a cached prefix).
    pub fn add_chunk(&mut self, new: u64, cached: u64) {
        self.tokens = self.tokens.saturating_add(new);
        self.pairs = self.pairs.saturating_add(causal_pairs(cached, new));
    }

    /// New tokens in the batch.
    #[must_use]
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// (query, key) pairs of causal attention in the batch.
    #[must_use]
    pub fn attention_pairs(&self) -> u64 {
        self.pairs
    }
}

/// The three terms of one phase's time, so that a caller can tell whether the phase was
/// compute- or memory-bound (which decides its power draw) as well as how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    /// FLOPs over the reachable FLOP/s, already divided by the clock.
    pub compute: Seconds,
    /// Bytes over the reachable bandwidth.
    pub memory: Seconds,
    /// The fixed overhead.
    pub overhead: Seconds,
}

impl Roofline {
    /// `max(compute, memory) + overhead`: compute and memory traffic overlap, the overhead
    /// does not.
    #[must_use]
    pub fn total(&self) -> Seconds {
        Seconds(self.compute.0.max(self.memory.0) + self.overhead.0)
    }

    /// Whether the compute term is the larger, i.e. whether a lower clock slows the phase.
    #[must_use]
    pub fn compute_bound(&self) -> bool {
        self.compute.0 > self.memory.0
    }
}

/// The latency of one replica of one LLM: the type the power experiment asks how long a
/// prefill batch or a decode step takes at a given clock.
///
/// It can only be built from figures that passed validation and weights that fit, so its
/// functions never fail.
///
/// ```
/// use gigawatt_fleet::GpuCatalog;
/// use gigawatt_power::model::{GpuPower, PowerModel};
/// use gigawatt_sim::inference::{Efficiency, LatencyModel, LlmSpec, PrefillBatch, Precision, ReplicaSpec};
/// use gigawatt_units::Watts;
///
/// let catalog = GpuCatalog::builtin();
/// let h100 = catalog.get("H100").expect("built in");
/// let replica = ReplicaSpec::new(h100, Precision::Fp8, 4)?;
/// let model = LatencyModel::new(LlmSpec::llama2_70b_fp8(), replica, Efficiency::default())?;
///
/// // Unloaded: a 2,048-token prompt takes ~110 ms to its first token (TensorRT-LLM
/// // measured 109 ms), a token at 2,048 tokens of context ~10 ms.
/// let ttft = model.ttft_unloaded(2048);
/// assert!((0.100..0.120).contains(&ttft.0), "{ttft}");
/// assert!((0.008..0.012).contains(&model.tbt_unloaded(2048).0));
///
/// // Capped at 250 W, both phases run at a lower clock. Prefill is compute-bound and takes
/// // longer; a decode step of a small batch is memory-bound and does not.
/// let gpu = GpuPower::from(h100);
/// let power = PowerModel::default();
/// let prefill_clock = gpu.clock_ratio(power.prefill.activity, Watts(250));
/// let decode_clock = gpu.clock_ratio(power.decode.activity, Watts(250));
/// assert!(decode_clock < 1.0);
/// let capped = model.prefill_time(&PrefillBatch::prompt(2048), prefill_clock);
/// assert!(capped.0 > 1.5 * ttft.0);
/// assert_eq!(model.decode_step_time(8, 8 * 2048, decode_clock), model.decode_step_time(8, 8 * 2048, 1.0));
/// # Ok::<(), gigawatt_sim::inference::InferenceError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    llm: LlmSpec,
    replica: ReplicaSpec,
    efficiency: Efficiency,
}

/// The clock ratio as the latency functions use it: in `[0.001, 1]`, and 1 when it is not a
/// number (`GpuPower::clock_ratio` never returns one).
fn clamp_clock(clock: f64) -> f64 {
    if clock.is_nan() { 1.0 } else { clock.clamp(1e-3, 1.0) }
}

impl LatencyModel {
    /// The model of `llm` served by `replica` at `efficiency`.
    ///
    /// # Errors
    /// The first figure that [`LlmSpec::validate`], [`ReplicaSpec::validate`] or
    /// [`Efficiency::validate`] refuses, or [`InferenceError::DoesNotFit`] when the
    /// weights leave no room for a single token of KV cache.
    pub fn new(
        llm: LlmSpec,
        replica: ReplicaSpec,
        efficiency: Efficiency,
    ) -> Result<LatencyModel, InferenceError> {
        llm.validate()?;
        replica.validate()?;
        efficiency.validate()?;
        if replica.kv_capacity_tokens(&llm) == 0 {
            return Err(InferenceError::DoesNotFit {
                model: llm.name.clone(),
                weights_gb: llm.weight_bytes() / 1e9,
                gpus: replica.gpus,
                gpu: replica.gpu.clone(),
                usable_gb: replica.usable_bytes() / 1e9,
                reserve_pct: replica.memory_reserve * 100.0,
            });
        }
        Ok(LatencyModel { llm, replica, efficiency })
    }

    /// The LLM.
    #[must_use]
    pub fn llm(&self) -> &LlmSpec {
        &self.llm
    }

    /// The GPUs serving it.
    #[must_use]
    pub fn replica(&self) -> &ReplicaSpec {
        &self.replica
    }

    /// The efficiencies in force.
    #[must_use]
    pub fn efficiency(&self) -> &Efficiency {
        &self.efficiency
    }

    /// Tokens of context (prompts plus generated tokens, over all running requests) the
    /// replica can keep in its KV cache. A batching simulator must keep the sum of its
    /// running requests' contexts under this.
    #[must_use]
    pub fn kv_capacity_tokens(&self) -> u64 {
        self.replica.kv_capacity_tokens(&self.llm)
    }

    fn compute_time(&self, flops: f64, clock: f64) -> Seconds {
        let rate = f64::from(self.replica.gpus) * self.replica.peak_flops * self.efficiency.mfu;
        Seconds(flops / rate / clamp_clock(clock))
    }

    fn memory_time(&self, bytes: f64) -> Seconds {
        let rate = f64::from(self.replica.gpus) * self.replica.hbm_bytes_per_s * self.efficiency.mbu;
        Seconds(bytes / rate)
    }

    /// The terms of a prefill of `batch` at `clock`: compute is the batch's matmul and
    /// attention FLOPs; memory is the weights, read once per forward pass, plus the KV
    /// cache the batch writes.
    #[must_use]
    pub fn prefill_terms(&self, batch: &PrefillBatch, clock: f64) -> Roofline {
        let flops =
            self.llm.dense_flops_per_token() * batch.tokens as f64 + self.llm.attention_flops(batch.pairs);
        let bytes =
            self.llm.weight_bytes() + self.replica.kv_bytes_per_token(&self.llm) * batch.tokens as f64;
        Roofline {
            compute: self.compute_time(flops, clock),
            memory: self.memory_time(bytes),
            overhead: self.efficiency.prefill_overhead,
        }
    }

    /// How long a prefill of `batch` takes at `clock` (the SM clock relative to full speed,
    /// from `GpuPower::clock_ratio` for prefill's activity under the limit in force):
    /// `max(compute / clock, memory) + overhead`. An empty batch costs nothing.
    #[must_use]
    pub fn prefill_time(&self, batch: &PrefillBatch, clock: f64) -> Seconds {
        if batch.tokens == 0 {
            return Seconds(0.0);
        }
        self.prefill_terms(batch, clock).total()
    }

    /// The terms of one decode step of `batch_size` sequences that hold
    /// `context_tokens` tokens of KV cache between them: compute is one token's matmuls per
    /// sequence plus its attention over its context; memory is the weights plus every
    /// sequence's KV cache, all read once.
    #[must_use]
    pub fn decode_terms(&self, batch_size: u32, context_tokens: u64, clock: f64) -> Roofline {
        let flops = self.llm.dense_flops_per_token() * f64::from(batch_size)
            + self.llm.attention_flops(context_tokens.saturating_add(batch_size.into()));
        let bytes =
            self.llm.weight_bytes() + self.replica.kv_bytes_per_token(&self.llm) * context_tokens as f64;
        Roofline {
            compute: self.compute_time(flops, clock),
            memory: self.memory_time(bytes),
            overhead: self.efficiency.decode_step_overhead,
        }
    }

    /// How long one decode step (one new token for each of `batch_size` sequences holding
    /// `context_tokens` tokens of KV cache in total) takes at `clock`:
    /// `max(compute / clock, memory) + overhead`. An empty batch costs nothing.
    #[must_use]
    pub fn decode_step_time(&self, batch_size: u32, context_tokens: u64, clock: f64) -> Seconds {
        if batch_size == 0 {
            return Seconds(0.0);
        }
        self.decode_terms(batch_size, context_tokens, clock).total()
    }

    /// Time to first token of a lone prompt on an idle replica at full clock: the floor of
    /// any time to first token the simulator can produce.
    #[must_use]
    pub fn ttft_unloaded(&self, prompt_tokens: u64) -> Seconds {
        self.prefill_time(&PrefillBatch::prompt(prompt_tokens), 1.0)
    }

    /// Time between tokens of a lone request with `context_tokens` of context on an idle
    /// replica at full clock: the floor of any time between tokens.
    #[must_use]
    pub fn tbt_unloaded(&self, context_tokens: u64) -> Seconds {
        self.decode_step_time(1, context_tokens, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigawatt_fleet::GpuCatalog;

    fn h100() -> GpuSpec {
        GpuCatalog::builtin().get("H100").cloned().expect("H100 is built in")
    }

    fn llama_on_h100(tp: u32) -> LatencyModel {
        let replica = ReplicaSpec::new(&h100(), Precision::Fp8, tp).expect("valid replica");
        LatencyModel::new(LlmSpec::llama2_70b_fp8(), replica, Efficiency::default()).expect("fits")
    }

    /// Output tokens per second per GPU of TensorRT-LLM's static-batching benchmark
    /// (`gptSessionBenchmark`): one prefill of `batch` prompts of `input` tokens, which
    /// yields the first output token, then `output − 1` decode steps at batch `batch`, the
    /// context growing by one token per sequence per step.
    fn static_batch_throughput(m: &LatencyModel, batch: u32, input: u64, output: u64) -> f64 {
        let prefill = m.prefill_time(&PrefillBatch::prompts((0..batch).map(|_| input)), 1.0);
        let decode: f64 =
            (1..output).map(|k| m.decode_step_time(batch, u64::from(batch) * (input + k), 1.0).0).sum();
        (u64::from(batch) * output) as f64 / (prefill.0 + decode) / f64::from(m.replica().gpus)
    }

    /// The calibration of `docs/inference-model.md`: with `mbu` fixed, the two first-token
    /// latencies (128 tokens: memory-bound, 2,048: compute-bound) give the prefill overhead
    /// and the MFU in closed form.
    fn calibrate(mbu: f64) -> (f64, f64) {
        let llm = LlmSpec::llama2_70b_fp8();
        let r = ReplicaSpec::new(&h100(), Precision::Fp8, 4).expect("valid replica");
        let g = f64::from(r.gpus);
        let weights_128 = llm.weight_bytes() + 128.0 * r.kv_bytes_per_token(&llm);
        let overhead = 0.026 - weights_128 / (g * r.hbm_bytes_per_s * mbu);
        let mfu = llm.prefill_flops(2048) / (g * r.peak_flops * (0.109 - overhead));
        (overhead, mfu)
    }

    fn within(model: f64, measured: f64, tolerance: f64) -> bool {
        (model / measured - 1.0).abs() <= tolerance
    }

    #[test]
    fn llama2_70b_figures_match_its_config() {
        let l = LlmSpec::llama2_70b_fp8();
        assert_eq!(l.validate(), Ok(()));
        assert_eq!(l.heads * l.head_dim, l.hidden);
        // ~69e9 parameters → 69 GB of FP8 weights, 160 KiB of FP8 KV per token.
        assert!((68.9e9..69.1e9).contains(&l.weight_bytes()), "{}", l.weight_bytes());
        assert_eq!(l.kv_bytes_per_token(), 163_840.0);
        // Attention is 1.9% of a 2,048-token prefill.
        let dense = 2.0 * l.params as f64 * 2048.0;
        let share = 1.0 - dense / l.prefill_flops(2048);
        assert!((0.018..0.020).contains(&share), "{share}");
    }

    #[test]
    fn replicas_come_from_the_catalog() {
        let r = ReplicaSpec::new(&h100(), Precision::Fp8, 2).expect("valid");
        assert_eq!((r.gpus, r.peak_flops, r.hbm_bytes_per_s, r.memory_bytes), (2, 1979e12, 3.35e12, 80e9));
        let bf16 = ReplicaSpec::new(&h100(), Precision::Bf16, 2).expect("valid");
        assert_eq!(bf16.peak_flops, 989.5e12);
        // 160 GB × 0.9 − 69 GB = 75 GB of KV cache: ~458k tokens.
        let tokens = r.kv_capacity_tokens(&LlmSpec::llama2_70b_fp8());
        assert!((455_000..460_000).contains(&tokens), "{tokens}");
        // More GPUs than KV heads store each head twice.
        let r16 = ReplicaSpec { gpus: 16, ..r };
        assert_eq!(r16.kv_bytes_per_token(&LlmSpec::llama2_70b_fp8()), 2.0 * 163_840.0);
    }

    #[test]
    fn bad_figures_are_refused_with_their_name() {
        let a100 = GpuCatalog::builtin().get("A100").cloned().expect("built in");
        let err = ReplicaSpec::new(&a100, Precision::Fp8, 4).expect_err("A100 has no FP8");
        assert!(err.to_string().starts_with("GPU `A100-SXM` has no FP8 tensor cores"), "{err}");
        let err = ReplicaSpec::new(&h100(), Precision::Fp8, 0).expect_err("zero GPUs");
        assert_eq!(err.to_string(), "replica.gpus must be at least 1 (got 0)");
        let mut no_bw = h100();
        no_bw.hbm_tbps = None;
        let err = ReplicaSpec::new(&no_bw, Precision::Bf16, 1).expect_err("no bandwidth");
        assert!(err.to_string().contains("no hbm_tbps figure"), "{err}");

        let mut l = LlmSpec::llama2_70b_fp8();
        l.kv_heads = 3;
        assert_eq!(
            l.validate().map_err(|e| e.to_string()),
            Err("llm.kv_heads must divide llm.heads (got 3 KV heads for 64 query heads)".into())
        );
        let mut l = LlmSpec::llama2_70b_fp8();
        l.bytes_per_weight = f64::NAN;
        assert!(l.validate().is_err());

        let e = Efficiency { mfu: 1.5, ..Efficiency::default() };
        assert_eq!(
            e.validate().map_err(|e| e.to_string()),
            Err("efficiency.mfu must be a share in (0, 1] (got 1.5)".into())
        );
        let e = Efficiency { decode_step_overhead: Seconds(-1.0), ..Efficiency::default() };
        assert!(e.validate().is_err());

        // 69 GB of FP8 weights fit one 80 GB H100 with a 10% reserve (72 GB); 138 GB of BF16
        // weights do not.
        let one = ReplicaSpec::new(&h100(), Precision::Bf16, 1).expect("valid");
        let bf16 = LlmSpec { bytes_per_weight: 2.0, ..LlmSpec::llama2_70b_fp8() };
        let err = LatencyModel::new(bf16, one, Efficiency::default()).expect_err("too big");
        assert!(
            err.to_string().contains("needs 138.0 GB of weights but 1 × H100-SXM offer 72.0 GB"),
            "{err}"
        );
    }

    #[test]
    fn caps_stretch_only_the_compute_bound_part() {
        let m = llama_on_h100(4);
        // Prefill of 2,048 tokens is compute-bound: at 0.7 of the clock it takes ~1/0.7 as
        // long, less the overhead, which does not scale.
        let batch = PrefillBatch::prompt(2048);
        let full = m.prefill_terms(&batch, 1.0);
        assert!(full.compute_bound());
        let slow = m.prefill_time(&batch, 0.7);
        let expected = full.compute.0 / 0.7 + full.overhead.0;
        assert!((slow.0 - expected).abs() < 1e-12);
        // A decode step at batch 8 is memory-bound, and stays so even at half the clock.
        let d = m.decode_terms(8, 8 * 2048, 1.0);
        assert!(!d.compute_bound());
        assert_eq!(m.decode_step_time(8, 8 * 2048, 0.5), d.total());
        // At batch 480 decode becomes compute-bound, and a cap slows it.
        assert!(m.decode_terms(480, 480 * 1152, 1.0).compute_bound());
        assert!(m.decode_step_time(480, 480 * 1152, 0.7).0 > m.decode_step_time(480, 480 * 1152, 1.0).0);
        // Monotone in the clock, and nonsense clocks are clamped, not propagated.
        let mut last = 0.0;
        for c in (1..=10).rev() {
            let t = m.prefill_time(&batch, f64::from(c) / 10.0).0;
            assert!(t >= last);
            last = t;
        }
        assert_eq!(m.prefill_time(&batch, f64::NAN), m.prefill_time(&batch, 1.0));
        assert_eq!(m.prefill_time(&batch, 7.0), m.prefill_time(&batch, 1.0));
        assert!(m.prefill_time(&batch, 0.0).0.is_finite());
        // Empty work costs nothing.
        assert_eq!(m.prefill_time(&PrefillBatch::default(), 1.0), Seconds(0.0));
        assert_eq!(m.decode_step_time(0, 0, 1.0), Seconds(0.0));
    }

    #[test]
    fn batches_count_attention_per_prompt() {
        let two = PrefillBatch::prompts([1000, 1000]);
        let one = PrefillBatch::prompt(2000);
        assert_eq!(two.tokens(), one.tokens());
        assert!(two.attention_pairs() < one.attention_pairs() / 2 + 1000);
        // A prompt prefilled in two chunks does the same attention as in one.
        let mut chunked = PrefillBatch::prompt(1200);
        chunked.add_chunk(800, 1200);
        assert_eq!(chunked.attention_pairs(), one.attention_pairs());
    }

    // ---- The check against published measurements ----
    //
    // NVIDIA TensorRT-LLM, docs/source/performance.md (v0.6.1 tables; the first-token
    // latencies are marked as v0.5 data), Llama 2 70B, H100 SXM 80GB, FP8 weights and FP8
    // KV cache, static batching (gptSessionBenchmark).

    #[test]
    fn defaults_are_the_calibration_on_first_token_latency() {
        let e = Efficiency::default();
        let (overhead, mfu) = calibrate(e.mbu);
        // The defaults are the calibrated values rounded to two digits.
        assert!((e.prefill_overhead.0 - overhead).abs() < 0.0005, "overhead {overhead}");
        assert!((e.mfu - mfu).abs() < 0.01, "mfu {mfu}");
        // The calibration's premise: 128 tokens are memory-bound, 2,048 compute-bound.
        let m = llama_on_h100(4);
        assert!(!m.prefill_terms(&PrefillBatch::prompt(128), 1.0).compute_bound());
        assert!(m.prefill_terms(&PrefillBatch::prompt(2048), 1.0).compute_bound());
        // So the model reproduces both points to within the rounding (3%).
        for (tokens, measured) in [(128, 0.026), (2048, 0.109)] {
            let t = m.ttft_unloaded(tokens).0;
            assert!(within(t, measured, 0.03), "{tokens} tokens: model {t}, measured {measured}");
        }
    }

    /// The real check: a measurement the calibration did not see, at another TP degree and
    /// a batch 96 times larger. Tolerance ±20%: the power experiment compares latencies at
    /// caps that stretch prefill by 30% and more (a 400 W cap on an H100), so an error
    /// below that still tells the effects apart; and the calibration and the check come
    /// from different TensorRT-LLM releases (v0.5, v0.6.1).
    #[test]
    fn prefill_heavy_throughput_matches_tp2_batch96() {
        let m = llama_on_h100(2);
        let model = static_batch_throughput(&m, 96, 2048, 128);
        assert!(within(model, 306.0, 0.20), "model {model:.0} vs measured 306 tok/s/GPU");
    }

    /// Same tolerance and reasoning; decode here is compute-bound (batch 1,024).
    #[test]
    fn short_sequences_match_tp2_batch1024() {
        let m = llama_on_h100(2);
        let model = static_batch_throughput(&m, 1024, 128, 128);
        assert!(within(model, 2657.0, 0.20), "model {model:.0} vs measured 2,657 tok/s/GPU");
    }

    /// Long decodes over large KV caches are where the roofline is optimistic, probably
    /// because TensorRT-LLM v0.6.1 read large KV caches far below the bandwidth it reached
    /// on weights (see the docs). The model must stay an upper bound there, and not a wild
    /// one: at most 3.5× the measured throughput (it is 3.1× and 2.0×). A better model
    /// would tighten this bound, never loosen it.
    #[test]
    fn long_decodes_are_bounded_not_matched() {
        let m4 = llama_on_h100(4);
        let m2 = llama_on_h100(2);
        for (m, batch, input, output, measured) in
            [(&m4, 480, 128, 2048, 1486.0), (&m2, 64, 2048, 2048, 547.0)]
        {
            let model = static_batch_throughput(m, batch, input, output);
            let ratio = model / measured;
            assert!(
                (1.0..=3.5).contains(&ratio),
                "batch {batch}: model {model:.0} vs {measured}: {ratio:.2}×"
            );
        }
    }

    /// Prints the table of `docs/inference-model.md` (`cargo test -p gigawatt-sim
    /// inference::tests::print_table -- --nocapture`).
    #[test]
    fn print_table() {
        let (m2, m4) = (llama_on_h100(2), llama_on_h100(4));
        let (overhead, mfu) = calibrate(Efficiency::default().mbu);
        println!("calibration: prefill overhead {:.2} ms, mfu {mfu:.3}", overhead * 1e3);
        println!("| measurement | measured | model | model / measured |");
        for (tokens, measured) in [(128, 26.0), (2048, 109.0)] {
            let model = m4.ttft_unloaded(tokens).0 * 1e3;
            println!(
                "| TTFT, TP 4, batch 1, {tokens} in | {measured} ms | {model:.1} ms | {:.2} |",
                model / measured
            );
        }
        for (m, batch, input, output, measured) in [
            (&m2, 1024, 128, 128, 2657.0),
            (&m4, 480, 128, 2048, 1486.0),
            (&m2, 96, 2048, 128, 306.0),
            (&m2, 64, 2048, 2048, 547.0),
        ] {
            let model = static_batch_throughput(m, batch, input, output);
            println!(
                "| TP {}, batch {batch}, {input} in / {output} out | {measured} | {model:.0} | {:.2} |",
                m.replica().gpus,
                model / measured
            );
        }
        println!("TBT TP4 at 2048: {:.2} ms", m4.tbt_unloaded(2048).0 * 1e3);
        println!("KV capacity TP2 {} TP4 {}", m2.kv_capacity_tokens(), m4.kv_capacity_tokens());
    }
}
