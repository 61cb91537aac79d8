//! The passes a pipeline can name, with their options, for `sculpt passes`
//! and for building pipeline steps.

use crate::pipeline::{Options, PipelineStep};
use crate::{Pass, PassError, Result};

#[derive(Debug, PartialEq)]
pub struct OptionInfo {
    pub name: &'static str,
    pub kind: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub options: &'static [OptionInfo],
    build: fn(&Options) -> Result<Box<dyn Pass>>,
}

pub static PASSES: &[PassInfo] = &[PassInfo {
    name: "cleanup",
    summary: "exact simplification: constant and shape folding, no-op removal, CSE, affine folding into Conv/Gemm/BatchNorm, MatMul+Add to Gemm, dead code",
    options: &[
        OptionInfo { name: "fold", kind: "bool", default: "true", help: "Constant nodes to initializers; evaluate nodes on constant inputs; fold static shape computations" },
        OptionInfo { name: "fold_limit", kind: "bytes", default: "512M", help: "largest constant folding may create" },
        OptionInfo { name: "fold_growth", kind: "bytes", default: "1G", help: "most the weights may grow through folding" },
        OptionInfo { name: "untie", kind: "bool", default: "false", help: "fold nodes of weights other nodes read too (a tied embedding's transpose), storing a second copy" },
        OptionInfo { name: "simplify", kind: "bool", default: "true", help: "remove Identity, inference Dropout and no-op Reshape/Transpose/Cast/Pad/Slice/Expand/Mul/Sub; merge Transpose and Reshape chains" },
        OptionInfo { name: "fuse", kind: "bool", default: "true", help: "fold BatchNormalization and per-channel Mul/Add into Conv/Gemm/BatchNorm; MatMul+Add to Gemm" },
        OptionInfo { name: "cse", kind: "bool", default: "true", help: "merge identical nodes, equal shape values and identical initializers" },
        OptionInfo { name: "dce", kind: "bool", default: "true", help: "remove nodes and initializers nothing reads" },
        OptionInfo { name: "infer", kind: "bool", default: "true", help: "infer value types and shapes" },
        OptionInfo { name: "input_defaults", kind: "constant|keep", default: "constant", help: "graph inputs with initializer defaults become constants (dropped from the inputs), or stay overridable" },
    ],
    build: |o| Ok(Box::new(crate::transform::cleanup::Cleanup::from_options(o)?)),
}, PassInfo {
    name: "erase",
    summary: "remove whole operators: identically-zero residual branches (exact), and the least important residual blocks within a budget (measured on calibration data)",
    options: &[
        OptionInfo { name: "zero", kind: "bool", default: "true", help: "erase branches whose output is identically zero (exact)" },
        OptionInfo { name: "budget", kind: "share", default: "none", help: "skip the least important residual blocks until this share of FLOPs is gone (needs --calib)" },
        OptionInfo { name: "blocks", kind: "count", default: "none", help: "skip this many of the least important residual blocks (needs --calib)" },
        OptionInfo { name: "kind", kind: "ffn|attention|conv|other|any", default: "any", help: "which blocks may be skipped" },
        OptionInfo { name: "metric", kind: "contribution|random", default: "contribution", help: "rank blocks by measured contribution, or at random (a baseline)" },
        OptionInfo { name: "seed", kind: "count", default: "0", help: "seed for metric=random" },
    ],
    build: |o| Ok(Box::new(crate::transform::erase::Erase::from_options(o)?)),
}, PassInfo {
    name: "prune",
    summary: "remove (or mask) channels, heads and conv groups of zero-invariant groups: exactly-zero ones, or the least important up to a ratio (magnitude, or activation-aware with a CFSP budget split)",
    options: &[
        OptionInfo { name: "criterion", kind: "zero|magnitude|activation|obs|random", default: "zero", help: "all-zero channels (lossless); smallest normalised L2 norm; weight norm x activation norm on calibration data; output error after the least-squares refit (OBS, needs calibration data); random (testing)" },
        OptionInfo { name: "ratio", kind: "share", default: "0", help: "share of the prunable params to remove" },
        OptionInfo { name: "budget", kind: "share", default: "none", help: "share of all the model's params to remove (instead of ratio)" },
        OptionInfo { name: "max_share", kind: "share", default: "0.75", help: "most of any one group's channels that may go" },
        OptionInfo { name: "reconstruct", kind: "auto|ls|bias|none", default: "auto", help: "refit what reads removed channels: least squares and bias (ls), bias only (bias, FLAP), nothing; auto = ls with calibration data, else none" },
        OptionInfo { name: "damp", kind: "number|auto", default: "auto", help: "ridge of the refit toward the original weights, times the mean input variance; auto: per site, the best of 0.001, 0.01, 0.1, 1 on held-out calibration samples" },
        OptionInfo { name: "sequential", kind: "bool", default: "false", help: "refit group by group on statistics of the model pruned so far (one calibration run per group)" },
        OptionInfo { name: "allocate", kind: "measured|predicted", default: "measured", help: "obs and activation with calibration data: scale each group's predicted costs by the output error a probe removal of its channels measures (one short calibration run per group), or trust the predictions" },
        OptionInfo { name: "guard", kind: "bool", default: "true", help: "drop a site's refit when it is worse than bias compensation on held-out calibration samples" },
        OptionInfo { name: "cfsp", kind: "number", default: "0", help: "activation: strength of CFSP's budget split by residual-block importance (scores x (importance/mean)^cfsp; 0 = one global ranking)" },
        OptionInfo { name: "per_layer", kind: "bool", default: "false", help: "remove the same share from every group instead of ranking globally" },
        OptionInfo { name: "round_to", kind: "count", default: "1", help: "keep every group's remaining width a multiple of this (removes fewer)" },
        OptionInfo { name: "protect", kind: "patterns", default: "none", help: "leave groups whose source node or member tensor matches one of these |-separated patterns (* wildcards)" },
        OptionInfo { name: "mode", kind: "remove|mask", default: "remove", help: "slice the channels out and fix dependent shapes, or zero them and keep shapes" },
        OptionInfo { name: "seed", kind: "count", default: "0", help: "seed for criterion=random" },
    ],
    build: |o| Ok(Box::new(crate::transform::prune::Prune::from_options(o)?)),
}, PassInfo {
    name: "lowrank",
    summary: "rewrite linear sites (MatMul, Gemm, Conv) as two products through a lower rank: truncated SVD, activation-aware SVD, or whitened SVD (SVD-LLM) with a least-squares refit",
    options: &[
        OptionInfo { name: "method", kind: "auto|svd|asvd|whiten", default: "auto", help: "svd: of the weight; asvd: input rows scaled by activation scale; whiten: by the Cholesky factor of the input covariance (least output error), then B refitted; auto = whiten with calibration data, else svd" },
        OptionInfo { name: "rank", kind: "count|full", default: "none", help: "the rank of every factored site (full: exact, factored even where it does not pay)" },
        OptionInfo { name: "energy", kind: "share", default: "none", help: "the least rank keeping this share of each site's output energy" },
        OptionInfo { name: "ratio", kind: "share", default: "none", help: "remove this share of each site's params" },
        OptionInfo { name: "budget", kind: "share", default: "none", help: "remove this share of all factorable sites' params, ranks allocated by predicted output error" },
        OptionInfo { name: "allocate", kind: "measured|roles|predicted", default: "measured", help: "budget with calibration data: scale each site's predicted errors by the output error a probe factoring it alone measures (one short calibration run per site), or per role of site (stream writers, attention projections, hidden layers: three runs), or trust the predictions" },
        OptionInfo { name: "rounds", kind: "count", default: "1", help: "allocate=measured|roles: probe rounds, each at the ranks the last allocation chose" },
        OptionInfo { name: "lookahead", kind: "bool", default: "true", help: "data-aware methods: weigh the output errors of a site that feeds another through an activation (an FFN's first matrix) by what they cost after it" },
        OptionInfo { name: "round_to", kind: "count", default: "1", help: "round ranks up to multiples of this" },
        OptionInfo { name: "min_gain", kind: "share", default: "0.1", help: "factor a site only where r·(k+n) <= (1 - min_gain)·k·n" },
        OptionInfo { name: "include", kind: "patterns", default: "none", help: "only sites whose node name matches one of these |-separated patterns (* wildcards)" },
        OptionInfo { name: "exclude", kind: "patterns", default: "none", help: "leave sites whose node name matches one of these patterns" },
        OptionInfo { name: "conv", kind: "channel|spatial", default: "channel", help: "convolutions: r output channels then 1x1, or kh x 1 then 1 x kw (2-d kernels)" },
        OptionInfo { name: "alpha", kind: "number", default: "0.5", help: "asvd: the exponent of the activation scale" },
        OptionInfo { name: "damp", kind: "number", default: "0.001", help: "whiten: ridge of B's refit toward the truncated B" },
    ],
    build: |o| Ok(Box::new(crate::transform::lowrank::LowRank::from_options(o)?)),
}, PassInfo {
    name: "quantize",
    summary: "a precision policy: weight-only int4/int8 blocks for MatMul/Gemm and embedding tables (MatMulNBits or blocked DequantizeLinear, GPTQ-rounded), int8 QDQ (W8A8, calibrated ranges), fp16/bf16 regions; uniform, by rules, or searched within a size or error budget",
    options: &[
        OptionInfo { name: "policy", kind: "int4|w8|int8|fp16|bf16|fp32|FILE.toml", default: "int4", help: "the precision of every node (int4/w8: weight-only blocks; int8: int8 weights and activations as QuantizeLinear/DequantizeLinear pairs; fp16/bf16: half-precision regions), or a TOML policy: default, include, exclude and [[rule]] tables (precision, op, name, layers)" },
        OptionInfo { name: "rules", kind: "text", default: "none", help: "rules after the policy's, ;-separated: PRECISION[/BLOCK] [op=A|B] [name=GLOB|GLOB] [layers=N-M]; the last matching rule wins" },
        OptionInfo { name: "search", kind: "bool", default: "false", help: "choose each weight-only weight's precision among choices: the model's output error measured with each candidate alone, then the least total error within budget" },
        OptionInfo { name: "budget", kind: "size:S|error:E", default: "none", help: "search: size:BYTES (K/M/G) or size:P% of all the model's weight bytes, or error:E (sum of measured relative output errors)" },
        OptionInfo { name: "choices", kind: "patterns", default: "int4|int4/128|w8/128", help: "search: the precisions to choose from (int4, w8 or fp32, each with an optional /BLOCK)" },
        OptionInfo { name: "probe_samples", kind: "count", default: "16", help: "search: calibration samples each sensitivity probe runs" },
        OptionInfo { name: "plot", kind: "path", default: "none", help: "search: write size against error, the Pareto points and the pick, as SVG" },
        OptionInfo { name: "policy_out", kind: "path", default: "none", help: "search: write the policy picked as TOML (policy=FILE.toml applies it again)" },
        OptionInfo { name: "calib", kind: "minmax|percentile|entropy|mse", default: "minmax", help: "int8: how an activation's range is chosen from its histogram: whole range, a percentile each side, least KL divergence, least squared error" },
        OptionInfo { name: "percentile", kind: "number", default: "99.999", help: "int8, calib=percentile: the share (%) of values kept on each side" },
        OptionInfo { name: "smooth", kind: "number|auto|none", default: "auto", help: "int8: SmoothQuant strength α (0 to 1; auto: per input, the α of least predicted output error, or none where none helps; none: off): each LayerNormalization output feeding only MatMul/Gemm sites is divided per channel by rms(x)^α / max|W|^(1-α), folded into the norm, the weights multiplied (exact), so outlier channels stop setting the activation scale" },
        OptionInfo { name: "smooth_mul", kind: "bool", default: "false", help: "int8: also smooth the inputs no LayerNormalization makes (an FFN's activation output), each through a per-channel Mul before its quantizer (one elementwise op)" },
        OptionInfo { name: "activations", kind: "int8|uint8", default: "int8", help: "int8: activation codes (S8S8 or U8S8 with int8 weights)" },
        OptionInfo { name: "ops", kind: "patterns", default: "none", help: "int8: the op types to quantize (|-separated; default those onnxruntime's quantizer takes: Conv, MatMul, Gemm, Add, Mul, pooling, Concat, Resize, data movement...)" },
        OptionInfo { name: "half", kind: "regions|weights", default: "regions", help: "fp16/bf16: regions = the nodes compute in it, Casts at the regions' edges; weights = weights stored in it and cast to f32 where read (smaller files for runtimes without half kernels, e.g. bf16 on onnxruntime's CPU provider)" },
        OptionInfo { name: "keep", kind: "patterns", default: "none", help: "fp16/bf16: op types left f32 (default Softmax, LogSoftmax, LayerNormalization, reductions, Pow, Exp, Log)" },
        OptionInfo { name: "format", kind: "auto|nbits|dq", default: "auto", help: "weight-only sites: nbits = com.microsoft::MatMulNBits (onnxruntime, tract); dq = opset-21 blocked DequantizeLinear of int4/uint4 (int8/uint8) codes feeding MatMul (standard ONNX; the model is raised to opset 21); auto = int4 as nbits, int8 as dq (onnxruntime's 8-bit MatMulNBits is slower than f32 on x86)" },
        OptionInfo { name: "block", kind: "count", default: "32", help: "rows of W per scale, along the input axis (a power of two, 16 or more), unless a precision says /BLOCK" },
        OptionInfo { name: "symmetric", kind: "bool", default: "false", help: "false: a zero point per block, the block's min and max spanning the codes; true: the middle code is zero, scales only" },
        OptionInfo { name: "round", kind: "gptq|rtn", default: "gptq", help: "gptq: row by row, each row's rounding error spread over the rows left through the inverse input second moment (needs calibration data, else rtn); rtn: round to nearest" },
        OptionInfo { name: "damp", kind: "number", default: "0.01", help: "gptq: added to the second moment's diagonal, times its mean" },
        OptionInfo { name: "tables", kind: "bool", default: "true", help: "embedding tables too (Gathers of constant f32 tables, see min_table): int4/int8 rows with block scales and zero points, gathered then dequantized with standard ops" },
        OptionInfo { name: "min_table", kind: "count", default: "4096", help: "tables: only those of at least this many elements" },
        OptionInfo { name: "accuracy_level", kind: "count", default: "0", help: "MatMulNBits' accuracy_level: the least precision onnxruntime may compute in (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)" },
        OptionInfo { name: "include", kind: "patterns", default: "none", help: "only nodes whose name matches one of these |-separated patterns (* wildcards)" },
        OptionInfo { name: "exclude", kind: "patterns", default: "none", help: "leave nodes whose name matches one of these patterns f32" },
    ],
    build: |o| Ok(Box::new(crate::transform::quantize::Quantize::from_options(o)?)),
}, PassInfo {
    name: "moe",
    summary: "each dense FFN (linear → activation → linear, or gated) as a mixture of experts: the hidden neurons split into E equal experts, a router fitted on calibration data picks k per token (MoEfication; no retraining)",
    options: &[
        OptionInfo { name: "experts", kind: "count", default: "16", help: "experts per FFN (E)" },
        OptionInfo { name: "k", kind: "count", default: "8", help: "experts each token computes (k = E is exact)" },
        OptionInfo { name: "partition", kind: "cluster|coactivation|random", default: "coactivation", help: "balanced k-means of the neurons on their input weights, or on their co-activation (how often two are active together) over calibration data; or at random" },
        OptionInfo { name: "router", kind: "fitted|centroid|random", default: "fitted", help: "least squares from the FFN input to each expert's contribution per token; the experts' mean input weights; or random" },
        OptionInfo { name: "skip", kind: "zero|mean", default: "mean", help: "what a skipped expert gives: nothing, or its calibration-mean output (the router then fitted to the deviation from it)" },
        OptionInfo { name: "form", kind: "onnx|ort", default: "onnx", help: "onnx: standard ops (TopK, per expert its tokens gathered, computed, scattered back); ort: onnxruntime's com.microsoft::MoE" },
        OptionInfo { name: "shared", kind: "count", default: "0", help: "neurons (the most used on calibration data) every token computes, outside the experts" },
        OptionInfo { name: "include", kind: "patterns", default: "none", help: "only FFNs whose down or up projection's node name matches one of these |-separated patterns" },
        OptionInfo { name: "seed", kind: "count", default: "0", help: "seed of the k-means starts and of random partitions and routers" },
        OptionInfo { name: "refit", kind: "bool", default: "true", help: "refit the experts' down projections, the skipped experts' means and the bias by least squares on calibration data, knowing which experts each token chose (with k = E the refit is the identity up to rounding)" },
        OptionInfo { name: "rounds", kind: "count", default: "3", help: "router=fitted with refit: how many times the router is fitted to the experts as refitted, and the experts refitted to the new routing" },
        OptionInfo { name: "damp", kind: "number", default: "0.1", help: "router fit: added to the input Gram matrix's diagonal, times its mean" },
    ],
    build: |o| Ok(Box::new(crate::transform::moe::Moe::from_options(o)?)),
}, PassInfo {
    name: "opset",
    summary: "raise the default-domain opset, node by node: attributes that became inputs are moved, Softmax's pre-13 flattening is written out, what cannot be converted is refused with the node",
    options: &[
        OptionInfo { name: "to", kind: "count", default: "21", help: "the opset to raise to (7 to 21; a model already there is left alone)" },
    ],
    build: |o| Ok(Box::new(crate::transform::raise_opset::RaiseOpset::from_options(o)?)),
}];

pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    PASSES.iter().find(|p| p.name == name)
}

/// Builds the pass for one step, rejecting unknown names and options.
pub fn build(step: &PipelineStep) -> Result<Box<dyn Pass>> {
    let info = lookup(&step.name).ok_or_else(|| PassError::UnknownPass {
        name: step.name.clone(),
        known: PASSES.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })?;
    let known: Vec<&str> = info.options.iter().map(|o| o.name).collect();
    step.options.reject_unknown(&known)?;
    (info.build)(&step.options.clone().with_spec(info.options))
}
