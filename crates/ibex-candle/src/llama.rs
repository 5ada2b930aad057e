//! LlamaForCausalLM (Salamandra, ALIA, Llama 2) with hidden states at every position.
//!
//! Derived from candle-transformers 0.11.1 `src/models/llama.rs` (huggingface/candle), itself a port of
//! transformers' `modeling_llama.py`. The differences: [`Llama::forward_hidden`] (scoring, no cache) returns the
//! final-norm hidden states at every position instead of the last position's logits, so the caller projects only the
//! positions it scores (see [`Llama::logits`]); the KV cache is a value the caller owns ([`KvCache`], for
//! [`Llama::forward_cached`] in generation) rather than shared state; the rotary tables cover
//! `max_position_embeddings`; config.json's `rope_theta` is read at the top level or under
//! transformers 5's `rope_parameters`, `head_dim` is honoured, and tied embeddings are taken from config.json.
//! Attention scores are soft-maxed in f32 whatever the weights' dtype, as upstream does.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, linear_no_bias, rms_norm, Embedding, Linear, RmsNorm, VarBuilder};
use ibex_core::placement::ModelShape;
use serde::Deserialize;
use std::ops::Range;

/// config.json as transformers writes it; optional fields are resolved once by [`LlamaConfig::into_config`].
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    hidden_size: usize,
    intermediate_size: usize,
    vocab_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<serde_json::Value>,
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    architectures: Vec<String>,
}

/// transformers 5's home for rotary settings.
#[derive(Debug, Clone, Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

/// The resolved model shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Rows of the embedding and of the LM head.
    pub vocab_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (fewer than query heads under grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Context window.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    /// Resolves defaults and rejects what this module does not implement, with the reason.
    pub fn into_config(self) -> std::result::Result<Config, String> {
        if let Some(arch) = self.architectures.iter().find(|a| a.as_str() != "LlamaForCausalLM") {
            return Err(format!("architecture {arch} is not supported; ibex runs LlamaForCausalLM checkpoints"));
        }
        let scaled = self.rope_scaling.as_ref().is_some_and(|v| !v.is_null())
            || self.rope_parameters.as_ref().and_then(|p| p.rope_type.as_deref()).is_some_and(|t| t != "default");
        if scaled {
            return Err("rope scaling is not supported; ibex implements plain rotary embeddings".into());
        }
        let rope_theta =
            self.rope_theta.or_else(|| self.rope_parameters.as_ref().and_then(|p| p.rope_theta)).unwrap_or(10_000.0);
        if self.num_attention_heads == 0
            || (self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads))
        {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let num_key_value_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        if num_key_value_heads == 0 || !self.num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {num_key_value_heads}",
                self.num_attention_heads
            ));
        }
        Ok(Config {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads,
            head_dim: self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
        })
    }
}

impl Config {
    /// The weights' sizes at `bytes_per_weight` (4 for f32, 2 for bf16 and f16), as [`Llama::new`] holds them: what
    /// placement over devices needs.
    pub fn shape(&self, bytes_per_weight: u64) -> ModelShape {
        let [hidden, inter, vocab, positions] =
            [self.hidden_size, self.intermediate_size, self.vocab_size, self.max_position_embeddings].map(|n| n as u64);
        let q_width = (self.num_attention_heads * self.head_dim) as u64;
        let kv_width = (self.num_key_value_heads * self.head_dim) as u64;
        let layer = 2 * hidden * q_width + 2 * hidden * kv_width + 3 * hidden * inter + 2 * hidden;
        ModelShape {
            layers: self.num_hidden_layers,
            layer_bytes: layer * bytes_per_weight,
            embed_bytes: vocab * hidden * bytes_per_weight,
            lm_head_bytes: vocab * hidden * bytes_per_weight,
            tied: self.tie_word_embeddings,
            norm_bytes: hidden * bytes_per_weight,
            per_handle_bytes: positions * self.head_dim as u64 * bytes_per_weight,
        }
    }
}

/// cos/sin tables for every position, in the model's dtype, computed in f32 as transformers does.
#[derive(Debug, Clone)]
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &Config, dtype: DType, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim;
        let inv_freq: Vec<f32> =
            (0..dim).step_by(2).map(|i| 1.0 / (cfg.rope_theta as f32).powf(i as f32 / dim as f32)).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, dim / 2), device)?;
        let positions = Tensor::arange(0u32, cfg.max_position_embeddings as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((cfg.max_position_embeddings, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Self { cos: freqs.cos()?.to_dtype(dtype)?, sin: freqs.sin()?.to_dtype(dtype)? })
    }

    /// The angles of positions `offset..offset + len`, shared by every row: `[len, head_dim / 2]` each.
    fn range(&self, offset: usize, len: usize) -> Result<Angles> {
        Ok(Angles { cos: self.cos.narrow(0, offset, len)?, sin: self.sin.narrow(0, offset, len)? })
    }

    /// The angles of per-row positions `[batch, seq]` (left-padded generation): `[batch, seq, head_dim / 2]` each.
    fn at(&self, positions: &Tensor) -> Result<Angles> {
        let (batch, seq_len) = positions.dims2()?;
        let flat = positions.flatten_all()?;
        let gather = |table: &Tensor| table.index_select(&flat, 0)?.reshape((batch, seq_len, ()));
        Ok(Angles { cos: gather(&self.cos)?, sin: gather(&self.sin)? })
    }
}

/// cos/sin for the positions of one forward pass.
struct Angles {
    cos: Tensor,
    sin: Tensor,
}

impl Angles {
    /// Rotates `x` `[batch, heads, seq, head_dim]`.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope(&x.contiguous()?, &self.cos, &self.sin)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let q_width = cfg.num_attention_heads * cfg.head_dim;
        let kv_width = cfg.num_key_value_heads * cfg.head_dim;
        Ok(Self {
            q_proj: linear_no_bias(cfg.hidden_size, q_width, vb.pp("q_proj"))?,
            k_proj: linear_no_bias(cfg.hidden_size, kv_width, vb.pp("k_proj"))?,
            v_proj: linear_no_bias(cfg.hidden_size, kv_width, vb.pp("v_proj"))?,
            o_proj: linear_no_bias(q_width, cfg.hidden_size, vb.pp("o_proj"))?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        })
    }

    /// Attention over `x`, after the keys and values in `cache` when there is one.
    fn forward(
        &self,
        x: &Tensor,
        angles: &Angles,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let (batch, seq_len, _) = x.dims3()?;
        let heads = |t: Tensor, n: usize| t.reshape((batch, seq_len, n, self.head_dim))?.transpose(1, 2);
        let q = angles.apply(&heads(self.q_proj.forward(x)?, self.num_heads)?)?;
        let mut k = angles.apply(&heads(self.k_proj.forward(x)?, self.num_kv_heads)?)?;
        let mut v = heads(self.v_proj.forward(x)?, self.num_kv_heads)?.contiguous()?;
        if let Some(cache) = cache {
            if let Some((past_k, past_v)) = cache.as_ref() {
                k = Tensor::cat(&[past_k, &k], 2)?;
                v = Tensor::cat(&[past_v, &v], 2)?;
            }
            *cache = Some((k.clone(), v.clone()));
        }
        let group = self.num_heads / self.num_kv_heads;
        let k = repeat_kv(k, group)?.contiguous()?;
        let v = repeat_kv(v, group)?.contiguous()?;
        let dtype = q.dtype();
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.contiguous()?.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let out = weights.matmul(&v)?.transpose(1, 2)?.reshape((batch, seq_len, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// Repeats each key/value head `group` times along the head axis (grouped-query attention).
fn repeat_kv(x: Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(x);
    }
    let (batch, kv_heads, seq_len, head_dim) = x.dims4()?;
    x.unsqueeze(2)?.expand((batch, kv_heads, group, seq_len, head_dim))?.reshape((
        batch,
        kv_heads * group,
        seq_len,
        head_dim,
    ))
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            gate_proj: linear_no_bias(cfg.hidden_size, cfg.intermediate_size, vb.pp("gate_proj"))?,
            up_proj: linear_no_bias(cfg.hidden_size, cfg.intermediate_size, vb.pp("up_proj"))?,
            down_proj: linear_no_bias(cfg.intermediate_size, cfg.hidden_size, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gated = (candle_nn::ops::silu(&self.gate_proj.forward(x)?)? * self.up_proj.forward(x)?)?;
        self.down_proj.forward(&gated)
    }
}

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            input_layernorm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        angles: &Angles,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let attention = self.self_attn.forward(&self.input_layernorm.forward(x)?, angles, mask, cache)?;
        let x = (x + attention)?;
        &x + self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?
    }
}

/// Consecutive decoder layers on one device, with that device's rotary tables.
#[derive(Debug, Clone)]
struct Stage {
    device: Device,
    rotary: Rotary,
    layers: Vec<Block>,
}

/// A LlamaForCausalLM whose callers choose the positions they project to the vocabulary, its decoder layers on one
/// device or split into consecutive stages over several (the embedding with the first, the final norm and the LM
/// head with the last): hidden states move between devices at stage boundaries, and each layer's KV cache stays on
/// its layer's device.
#[derive(Debug, Clone)]
pub struct Llama {
    embed_tokens: Embedding,
    stages: Vec<Stage>,
    norm: RmsNorm,
    lm_head: Linear,
    config: Config,
}

impl Llama {
    /// Builds the model from weights named as transformers saves them (`model.layers.0.self_attn.q_proj.weight`),
    /// one stage per `(weights on a device, its layers)`, the ranges consecutive from layer 0 to the last.
    pub fn new(cfg: &Config, stages: &[(VarBuilder, Range<usize>)]) -> Result<Self> {
        let (Some((first, _)), Some((last, _))) = (stages.first(), stages.last()) else {
            candle_core::bail!("a model needs at least one stage");
        };
        let covered: Vec<usize> = stages.iter().flat_map(|(_, layers)| layers.clone()).collect();
        if covered != (0..cfg.num_hidden_layers).collect::<Vec<_>>() {
            candle_core::bail!("stages must cover layers 0..{} in order", cfg.num_hidden_layers);
        }
        let embed_tokens = embedding(cfg.vocab_size, cfg.hidden_size, first.pp("model.embed_tokens"))?;
        let lm_head = match (cfg.tie_word_embeddings, stages.len()) {
            (true, 1) => Linear::new(embed_tokens.embeddings().clone(), None),
            // Tied weights on another device: the last stage reads its own copy of the embedding.
            (true, _) => {
                Linear::new(last.pp("model.embed_tokens").get((cfg.vocab_size, cfg.hidden_size), "weight")?, None)
            }
            (false, _) => linear_no_bias(cfg.hidden_size, cfg.vocab_size, last.pp("lm_head"))?,
        };
        let stages = stages
            .iter()
            .map(|(vb, layers)| {
                Ok(Stage {
                    device: vb.device().clone(),
                    rotary: Rotary::new(cfg, vb.dtype(), vb.device())?,
                    layers: layers
                        .clone()
                        .map(|i| Block::new(cfg, vb.pp(format!("model.layers.{i}"))))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embed_tokens,
            stages,
            norm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, last.pp("model.norm"))?,
            lm_head,
            config: cfg.clone(),
        })
    }

    /// The resolved shape.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The devices of its stages, in layer order.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.stages.iter().map(|stage| &stage.device)
    }

    /// Where input ids go: the first stage's device.
    pub fn input_device(&self) -> &Device {
        &self.stages[0].device
    }

    /// Where hidden states and logits come out: the last stage's device.
    pub fn output_device(&self) -> &Device {
        &self.stages[self.stages.len() - 1].device
    }

    /// Final-norm hidden states `[batch, seq, hidden]` for right-padded `input_ids` `[batch, seq]` (on
    /// [`Llama::input_device`]; the result is on [`Llama::output_device`]). Without `tree`, each row is one sequence
    /// under the causal mask, and no padding mask is needed: a real position never sees the padding after it (lm-eval
    /// relies on the same). With `tree`, each row is a flattened prefix tree whose tokens sit at the positions and see
    /// the tokens the layout gives.
    pub fn forward_hidden(&self, input_ids: &Tensor, tree: Option<&TreeLayout>) -> Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        // A tree row may be longer than the window; its positions (depths) are what must fit.
        let longest = tree.map_or(seq_len, |tree| tree.positions.iter().max().map_or(0, |&p| p as usize + 1));
        if longest > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {longest} tokens exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            );
        }
        let mut x = self.embed_tokens.forward(input_ids)?;
        for stage in &self.stages {
            x = x.to_device(&stage.device)?;
            let (mask, angles) = match tree {
                None => (causal_mask(seq_len, &stage.device)?, stage.rotary.range(0, seq_len)?),
                Some(tree) => (
                    Tensor::from_slice(&tree.mask, (batch, 1, seq_len, seq_len), &stage.device)?,
                    stage.rotary.at(&Tensor::from_slice(&tree.positions, (batch, seq_len), &stage.device)?)?,
                ),
            };
            for layer in &stage.layers {
                x = layer.forward(&x, &angles, Some(&mask), None)?;
            }
        }
        self.norm.forward(&x)
    }

    /// An empty cache for [`Llama::forward_cached`], for prompts left-padded by `pads[row]` tokens.
    pub fn new_cache(&self, pads: Vec<usize>) -> KvCache {
        KvCache { layers: vec![None; self.config.num_hidden_layers], len: 0, pads }
    }

    /// Logits `[batch, vocab]` at the last of `input_ids` `[batch, seq]`, which continue the positions in `cache`;
    /// the cache then holds them too. For greedy generation: the left-padded prompts once, then one token per row
    /// at a time. A row's padding is masked out and its positions count from its first real token, as transformers'
    /// `generate` does with an attention mask.
    pub fn forward_cached(&self, input_ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        let offset = cache.len;
        let longest = offset + seq_len - cache.pads.iter().min().copied().unwrap_or(0);
        if longest > self.config.max_position_embeddings {
            candle_core::bail!(
                "generation reached {longest} tokens, past max_position_embeddings {}",
                self.config.max_position_embeddings
            );
        }
        let positions: Vec<u32> = cache
            .pads
            .iter()
            .flat_map(|&pad| (offset..offset + seq_len).map(move |p| p.saturating_sub(pad) as u32))
            .collect();
        let mut x = self.embed_tokens.forward(input_ids)?;
        let mut layer_caches = cache.layers.iter_mut();
        for stage in &self.stages {
            x = x.to_device(&stage.device)?;
            let angles = stage.rotary.at(&Tensor::from_vec(positions.clone(), (batch, seq_len), &stage.device)?)?;
            let mask = padded_causal_mask(&cache.pads, seq_len, offset, &stage.device)?;
            for (layer, layer_cache) in stage.layers.iter().zip(layer_caches.by_ref()) {
                x = layer.forward(&x, &angles, mask.as_ref(), Some(layer_cache))?;
            }
        }
        cache.len += seq_len;
        let last = self.norm.forward(&x.narrow(1, seq_len - 1, 1)?)?.squeeze(1)?;
        self.logits(&last)
    }

    /// Vocabulary logits `[rows, vocab]` for hidden states `[rows, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }
}

/// The layout of a batch whose rows are flattened prefix trees (`ibex_core::prefix::PrefixTree`), for
/// [`Llama::forward_hidden`].
#[derive(Debug, Clone, PartialEq)]
pub struct TreeLayout {
    /// Each token's position in its sequences, `[batch, seq]` row-major.
    pub positions: Vec<u32>,
    /// Additive attention mask `[batch, seq, seq]` row-major: 0 where a query sees a key, −∞ elsewhere; every query
    /// sees at least itself.
    pub mask: Vec<f32>,
}

/// The keys and values of every layer for the positions seen so far, owned by one generation.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    pads: Vec<usize>,
}

/// `[seq, seq]` additive mask: 0 on and below the diagonal, −∞ above.
fn causal_mask(seq_len: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> =
        (0..seq_len).flat_map(|i| (0..seq_len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (seq_len, seq_len), device)
}

/// `[batch, 1, seq, offset + seq]` additive mask for queries at positions `offset..offset + seq` of left-padded rows:
/// a key after the query or inside the row's padding is hidden. `f32::MIN` rather than −∞, as transformers uses, so
/// a padding query (which may see no key at all) gets finite scores instead of NaN. `None` when nothing is hidden.
fn padded_causal_mask(pads: &[usize], seq_len: usize, offset: usize, device: &Device) -> Result<Option<Tensor>> {
    if seq_len == 1 && pads.iter().all(|&p| p == 0) {
        return Ok(None);
    }
    let keys = offset + seq_len;
    let mask: Vec<f32> = pads
        .iter()
        .flat_map(|&pad| {
            (0..seq_len)
                .flat_map(move |i| (0..keys).map(move |j| if j > offset + i || j < pad { f32::MIN } else { 0.0 }))
        })
        .collect();
    Ok(Some(Tensor::from_vec(mask, (pads.len(), 1, seq_len, keys), device)?))
}
