using Whittle.Native.Autograd;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>
/// GPT-NeoX / Pythia, computed exactly as Hugging Face transformers computes GPTNeoXForCausalLM (fp32):
/// embed_in → per layer [input_layernorm → fused query_key_value (rows per head [H, 3, D]) → partial rotary
/// (rotate-half on the first rotary_pct·D dims of q and k) → causal attention, scale 1/sqrt(D) → dense] and
/// [post_attention_layernorm → dense_h_to_4h → GELU → dense_4h_to_h], combined in parallel (x + attn(ln1 x) + mlp(ln2 x))
/// or sequentially (x + attn(ln1 x), then + mlp(ln2 ·)) → final_layer_norm → embed_out (untied, no bias).
/// The forward pass runs over an <see cref="ActiveArchitecture"/>; the full model is its trivial case.
/// </summary>
public sealed class GptNeoX(GptNeoXConfig config, IBackend backend) : LanguageModel(config.Validate(), backend)
{
    public new GptNeoXConfig Config => (GptNeoXConfig)base.Config;
    public override string EmbeddingName => EmbedIn;
    public override string HeadName => EmbedOut;

    // ---------------------------------------------------------------- names and shapes (Hugging Face's)

    public const string EmbedIn = "gpt_neox.embed_in.weight";
    public const string EmbedOut = "embed_out.weight";
    public const string FinalNormWeight = "gpt_neox.final_layer_norm.weight";
    public const string FinalNormBias = "gpt_neox.final_layer_norm.bias";
    public static string LayerPrefix(int layer) => $"gpt_neox.layers.{layer}.";

    public static IEnumerable<(string Name, int[] Shape)> Layout(GptNeoXConfig c)
    {
        int C = c.HiddenSize, D = c.HeadSize;
        yield return (EmbedIn, [c.VocabSize, C]);
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = LayerPrefix(l);
            int h = c.HeadsOf(l), m = c.IntermediateOf(l);
            yield return (p + "input_layernorm.weight", [C]);
            yield return (p + "input_layernorm.bias", [C]);
            yield return (p + "post_attention_layernorm.weight", [C]);
            yield return (p + "post_attention_layernorm.bias", [C]);
            yield return (p + "attention.query_key_value.weight", [3 * h * D, C]);
            yield return (p + "attention.query_key_value.bias", [3 * h * D]);
            yield return (p + "attention.dense.weight", [C, h * D]);
            yield return (p + "attention.dense.bias", [C]);
            yield return (p + "mlp.dense_h_to_4h.weight", [m, C]);
            yield return (p + "mlp.dense_h_to_4h.bias", [m]);
            yield return (p + "mlp.dense_4h_to_h.weight", [C, m]);
            yield return (p + "mlp.dense_4h_to_h.bias", [C]);
        }
        yield return (FinalNormWeight, [C]);
        yield return (FinalNormBias, [C]);
        yield return (EmbedOut, [c.VocabSize, C]);
    }

    // ---------------------------------------------------------------- initialisation

    /// <summary>
    /// A new model, initialised the GPT-2/Pythia way: every weight matrix and both embeddings ~ N(0, 0.02); the two
    /// projections that write into the residual stream (attention.dense, mlp.dense_4h_to_h) ~ N(0, 0.02/sqrt(2·layers))
    /// so the residual's variance does not grow with depth; biases 0; layernorm weight 1, bias 0.
    /// </summary>
    public static GptNeoX CreateRandom(GptNeoXConfig config, IBackend backend, ulong seed)
    {
        var model = new GptNeoX(config, backend);
        model.Initialise(seed);
        return model;
    }

    protected override InitRule InitOf(ParameterInfo p) => Init(Config, p);

    static InitRule Init(GptNeoXConfig config, ParameterInfo p)
    {
        if (p.Name.EndsWith("layernorm.weight") || p.Name == FinalNormWeight) return InitRule.Fill(1f);
        if (p.Shape.Length == 1) return InitRule.Fill(0f);
        bool residual = p.Name.EndsWith("attention.dense.weight") || p.Name.EndsWith("dense_4h_to_h.weight");
        return InitRule.Normal(residual ? 0.02 / Math.Sqrt(2.0 * config.NumLayers) : 0.02);
    }

    /// <summary>The sequential draw (<see cref="LanguageModel.SequentialInit"/>) with GPT-NeoX's rule.</summary>
    public static Tensor SequentialInit(ParameterSet parameters, GptNeoXConfig config, ulong seed) =>
        SequentialInit(parameters, p => Init(config, p), seed);

    /// <summary>The parallel draw (<see cref="LanguageModel.RandomInit"/>) with GPT-NeoX's rule.</summary>
    public static Tensor RandomInit(ParameterSet parameters, GptNeoXConfig config, ulong seed, int maxThreads = -1) =>
        RandomInit(parameters, p => Init(config, p), seed, maxThreads);

    /// <summary>inv_freq[i] = base^(-2i/R) over the first R = rotary_pct·D dims, as HF's GPT-NeoX builds it.</summary>
    protected override double[] RotaryInverseFrequencies()
    {
        int r = Config.RotaryDims;
        return Enumerable.Range(0, r / 2).Select(i => 1.0 / Math.Pow(Config.RotaryBase, 2.0 * i / r)).ToArray();
    }

    // ---------------------------------------------------------------- forward

    /// <summary>The final layernorm's output (B·T, d) for ids (B, T): <see cref="Forward"/> without the LM head.</summary>
    public override Var ForwardHidden(Tape tape, Tensor ids, ActiveArchitecture? active = null, ForwardObserver? observe = null)
    {
        var c = Config;
        var a = (active ?? ActiveArchitecture.Full(c)).Validate(c);
        if (ids.Rank != 2 || ids.DType != DType.I32) throw new ArgumentException($"ids must be an i32 (B, T) tensor, got {ids.Describe()}");
        int B = ids.Size(0), T = ids.Size(1), N = B * T, d = a.EmbedDim, D = c.HeadSize;
        var (cos, sin) = RotaryTables(T);
        float scale = 1f / MathF.Sqrt(D);
        bool tanh = c.GeluTanh;

        var x = tape.Embedding(ids.Reshape(N), Param(tape, EmbedIn, rows: null, cols: d));
        foreach (var (l, i) in a.Layers.Select((l, i) => (l, i)))
        {
            string p = LayerPrefix(l);
            int h = a.Heads[i], m = a.Intermediate[i];
            observe?.Invoke(ForwardTap.LayerInput, i, x.Data);
            var ln1 = tape.LayerNorm(
                x, Param(tape, p + "input_layernorm.weight", d), Param(tape, p + "input_layernorm.bias", d), c.LayerNormEps);
            // (N, 3·h·D): the first h heads' [q, k, v] rows of the fused weight are its first 3·h·D rows.
            var qkv = Linear(tape, ln1, p + "attention.query_key_value.weight", p + "attention.query_key_value.bias", 3 * h * D, d);
            long[] headStrides = [(long)T * 3 * h * D, 3L * h * D, 3L * D, 1];
            int[] headShape = [B, T, h, D];
            var q = tape.View(qkv, t => t.AsStrided(headShape, headStrides, 0));
            var k = tape.View(qkv, t => t.AsStrided(headShape, headStrides, D));
            var v = tape.View(qkv, t => t.AsStrided(headShape, headStrides, 2 * D));
            if (c.RotaryDims > 0) { tape.Rotary(q, cos, sin); tape.Rotary(k, cos, sin); }
            var att = tape.Attention(q, k, v, scale, Attention);  // (B, T, h, D)
            observe?.Invoke(ForwardTap.AttentionHeads, i, att.Data);
            tape.Release(qkv);
            var attFlat = tape.View(att, t => t.Reshape(N, h * D));
            // attention's backward reads att
            var attOut = Linear(tape, attFlat, p + "attention.dense.weight", p + "attention.dense.bias", d, h * D, consumesInput: false);
            tape.Release(att);

            Var mlpIn, residual;
            if (c.UseParallelResidual) { mlpIn = x; residual = x; }
            else { residual = tape.Add(x, attOut); tape.Release(x, attOut); mlpIn = residual; }
            var ln2 = tape.LayerNorm(
                mlpIn, Param(tape, p + "post_attention_layernorm.weight", d), Param(tape, p + "post_attention_layernorm.bias", d),
                c.LayerNormEps);
            var hidden = Linear(tape, ln2, p + "mlp.dense_h_to_4h.weight", p + "mlp.dense_h_to_4h.bias", m, d);
            var act = tape.Gelu(hidden, tanh);
            tape.Release(hidden);
            observe?.Invoke(ForwardTap.MlpActivation, i, act.Data);
            // GELU's backward reads its input, not act
            var mlpOut = Linear(tape, act, p + "mlp.dense_4h_to_h.weight", p + "mlp.dense_4h_to_h.bias", d, m);
            Var next;
            if (c.UseParallelResidual)
            {
                var sum = tape.Add(attOut, mlpOut);
                tape.Release(attOut, mlpOut);
                next = tape.Add(x, sum);
                tape.Release(sum);
            }
            else { next = tape.Add(residual, mlpOut); tape.Release(mlpOut); }
            tape.Release(x, residual);
            observe?.Invoke(ForwardTap.LayerOutput, i, next.Data);
            x = next;
        }
        var final = tape.LayerNorm(x, Param(tape, FinalNormWeight, d), Param(tape, FinalNormBias, d), c.LayerNormEps);
        tape.Release(x);
        return final;
    }
}
