using Whittle.Native.Autograd;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>
/// The Llama family (llama, qwen2, qwen3, mistral; <see cref="LlamaConfig"/>), computed as Hugging Face transformers
/// computes its ForCausalLM models in f32: embed_tokens → per layer [input_layernorm (RMSNorm) → q_proj, k_proj, v_proj
/// (H, KV, KV heads of head_dim D) → (Qwen3: q_norm, k_norm, RMSNorm over each head) → rotary (rotate-half over the
/// whole head, scaled frequencies) → causal grouped-query attention, scale 1/sqrt(D), query head h reading kv head
/// h / (H / KV) → o_proj → + residual] and [post_attention_layernorm → down(silu(gate(x)) ⊙ up(x)) → + residual] → norm →
/// lm_head, or embed_tokens again when tie_word_embeddings (one tensor: the gradients of both uses add up in it).
/// The forward pass runs over an <see cref="ActiveArchitecture"/> (the full model is its trivial case) through leading views
/// of the parent's weights, as GPT-NeoX's does: the first d channels everywhere (RMSNorm then normalises over those d channels:
/// it is not mean-centred, so nothing else changes), and per layer the first kv·G·D rows of q_proj (its rows are group-major
/// [KV][G][D], so the first kv whole query groups), the first kv·D rows of k_proj and v_proj, o_proj's first d rows × h·D
/// columns, the first m rows of gate_proj and up_proj and m columns of down_proj; the LM head (tied or not) sliced to d columns.
/// Gradients land in the same slices of the parent's gradient buffer.
/// </summary>
public sealed class Llama(LlamaConfig config, IBackend backend) : LanguageModel(config.Validate(), backend)
{
    public new LlamaConfig Config => (LlamaConfig)base.Config;
    public override string EmbeddingName => EmbedTokens;
    public override string HeadName => Config.TieWordEmbeddings ? EmbedTokens : LmHead;

    // ---------------------------------------------------------------- names and shapes (Hugging Face's)

    public const string EmbedTokens = "model.embed_tokens.weight";
    public const string LmHead = "lm_head.weight";
    public const string FinalNorm = "model.norm.weight";
    public static string LayerPrefix(int layer) => $"model.layers.{layer}.";

    public static IEnumerable<(string Name, int[] Shape)> Layout(LlamaConfig c)
    {
        int C = c.HiddenSize, D = c.HeadSize;
        yield return (EmbedTokens, [c.VocabSize, C]);
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = LayerPrefix(l);
            int H = c.HeadsOf(l), KV = c.KvHeadsOf(l), m = c.IntermediateOf(l);
            yield return (p + "input_layernorm.weight", [C]);
            yield return (p + "post_attention_layernorm.weight", [C]);
            foreach (var (proj, rows) in new[] { ("q_proj", H * D), ("k_proj", KV * D), ("v_proj", KV * D) })
            {
                yield return (p + $"self_attn.{proj}.weight", [rows, C]);
                if (c.QkvBias) yield return (p + $"self_attn.{proj}.bias", [rows]);
            }
            if (c.QkNorm)
            {
                yield return (p + "self_attn.q_norm.weight", [D]);
                yield return (p + "self_attn.k_norm.weight", [D]);
            }
            yield return (p + "self_attn.o_proj.weight", [C, H * D]);
            if (c.OutputBias) yield return (p + "self_attn.o_proj.bias", [C]);
            foreach (var (proj, rows, cols) in new[] { ("gate_proj", m, C), ("up_proj", m, C), ("down_proj", C, m) })
            {
                yield return (p + $"mlp.{proj}.weight", [rows, cols]);
                if (c.GatedMlpBias) yield return (p + $"mlp.{proj}.bias", [rows]);
            }
        }
        yield return (FinalNorm, [C]);
        if (!c.TieWordEmbeddings) yield return (LmHead, [c.VocabSize, C]);
    }

    // ---------------------------------------------------------------- initialisation

    /// <summary>
    /// A new model, initialised as this engine initialises GPT-NeoX (GPT-2 style): every weight matrix and the embedding
    /// ~ N(0, 0.02), the two projections that write into the residual stream (o_proj, down_proj) ~ N(0, 0.02/sqrt(2·layers));
    /// biases 0; norm weights 1. (HF's Llama init draws o_proj and down_proj at 0.02 too; the scaled residual is the choice
    /// the engine's pretraining runs are made with.)
    /// </summary>
    public static Llama CreateRandom(LlamaConfig config, IBackend backend, ulong seed)
    {
        var model = new Llama(config, backend);
        model.Initialise(seed);
        return model;
    }

    protected override InitRule InitOf(ParameterInfo p)
    {
        if (p.Name.EndsWith("norm.weight")) return InitRule.Fill(1f);
        if (p.Shape.Length == 1) return InitRule.Fill(0f);
        bool residual = p.Name.EndsWith("o_proj.weight") || p.Name.EndsWith("down_proj.weight");
        return InitRule.Normal(residual ? 0.02 / Math.Sqrt(2.0 * Config.NumLayers) : 0.02);
    }

    protected override double[] RotaryInverseFrequencies() => Config.RotaryInverseFrequencies();

    // ---------------------------------------------------------------- forward

    /// <summary>The final norm's output (B·T, d) for ids (B, T): <see cref="LanguageModel.Forward"/> without the LM head.</summary>
    public override Var ForwardHidden(Tape tape, Tensor ids, ActiveArchitecture? active = null, ForwardObserver? observe = null)
    {
        var c = Config;
        var a = (active ?? ActiveArchitecture.Full(c)).Validate(c);
        if (ids.Rank != 2 || ids.DType != DType.I32) throw new ArgumentException($"ids must be an i32 (B, T) tensor, got {ids.Describe()}");
        int B = ids.Size(0), T = ids.Size(1), N = B * T, d = a.EmbedDim, D = c.HeadSize;
        var (cos, sin) = RotaryTables(T);
        float scale = 1f / MathF.Sqrt(D), eps = c.RmsNormEps;

        var x = tape.Embedding(ids.Reshape(N), Param(tape, EmbedTokens, rows: null, cols: d));
        foreach (var (l, i) in a.Layers.Select((l, i) => (l, i)))
        {
            string p = LayerPrefix(l), at = p + "self_attn.", mlp = p + "mlp.";
            int h = a.Heads[i], KV = a.KvHeads[i], m = a.Intermediate[i];
            observe?.Invoke(ForwardTap.LayerInput, i, x.Data);
            var ln1 = tape.RmsNorm(x, Param(tape, p + "input_layernorm.weight", d), eps);
            string? Bias(string proj, bool has) => has ? at + proj + ".bias" : null;
            var q = Linear(tape, ln1, at + "q_proj.weight", Bias("q_proj", c.QkvBias), h * D, d, consumesInput: false);   // (N, h·D)
            var k = Linear(tape, ln1, at + "k_proj.weight", Bias("k_proj", c.QkvBias), KV * D, d, consumesInput: false);  // (N, KV·D)
            var v = Linear(tape, ln1, at + "v_proj.weight", Bias("v_proj", c.QkvBias), KV * D, d);                        // (N, KV·D)
            var q4 = tape.View(q, t => t.Reshape(B, T, h, D));
            var k4 = tape.View(k, t => t.Reshape(B, T, KV, D));
            var v4 = tape.View(v, t => t.Reshape(B, T, KV, D));
            if (c.QkNorm)
            {
                // Per head, before the rotary (the norms' backward reads their inputs q and k, not their outputs)
                q4 = tape.RmsNorm(q4, Param(tape, at + "q_norm.weight"), eps);
                k4 = tape.RmsNorm(k4, Param(tape, at + "k_norm.weight"), eps);
            }
            tape.Rotary(q4, cos, sin); tape.Rotary(k4, cos, sin);   // in place: nothing saved their pre-rotation values
            var att = tape.Attention(q4, k4, v4, scale, Attention);  // (B, T, h, D)
            observe?.Invoke(ForwardTap.AttentionHeads, i, att.Data);
            tape.Release(q, k, v, q4, k4);   // views are not the tape's: only the buffers are freed (in no-grad mode)
            var attFlat = tape.View(att, t => t.Reshape(N, h * D));
            // attention's backward reads its output att, so o_proj must not discard it
            var attOut = Linear(tape, attFlat, at + "o_proj.weight", Bias("o_proj", c.OutputBias), d, h * D, consumesInput: false);
            tape.Release(att);
            var residual = tape.Add(x, attOut);
            tape.Release(x, attOut);

            var ln2 = tape.RmsNorm(residual, Param(tape, p + "post_attention_layernorm.weight", d), eps);
            string? MlpBias(string proj) => c.GatedMlpBias ? mlp + proj + ".bias" : null;
            var gate = Linear(tape, ln2, mlp + "gate_proj.weight", MlpBias("gate_proj"), m, d, consumesInput: false);   // (N, m)
            var up = Linear(tape, ln2, mlp + "up_proj.weight", MlpBias("up_proj"), m, d);                                // (N, m)
            var act = tape.SwiGlu(gate, up);
            tape.Release(gate, up);
            observe?.Invoke(ForwardTap.MlpActivation, i, act.Data);
            // SwiGLU's backward reads gate and up, not act
            var mlpOut = Linear(tape, act, mlp + "down_proj.weight", MlpBias("down_proj"), d, m);
            var next = tape.Add(residual, mlpOut);
            tape.Release(residual, mlpOut);
            observe?.Invoke(ForwardTap.LayerOutput, i, next.Data);
            x = next;
        }
        var final = tape.RmsNorm(x, Param(tape, FinalNorm, d), eps);
        tape.Release(x);
        return final;
    }
}
