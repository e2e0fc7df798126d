namespace Whittle.Cli;

/// <summary>`whittle eval`: perplexity of a model on a dataset's validation split, a text file or a JSON list of ids.</summary>
static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory (Hugging Face GPT-NeoX or Llama family).",
            Required = true };
        var seqLen = new Option<int?>("--seq-len") { Description = "Window length T: each window gives T−1 predictions (default: " +
            "min(128, max_position_embeddings))." };
        var stride = new Option<int?>("--stride") { Description = "Step S between windows, 1 <= S <= T (default T): windows of T " +
            "tokens start every S tokens; the first scores all its tokens after the first, each later one only its last min(S, T−1) " +
            "(Hugging Face's strided sliding-window perplexity; S = T is the default non-overlapping definition)." };
        var batch = new Option<int>("--batch-size") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 16 };
        var maxTokens = new Option<long?>("--max-tokens") { Description = "Stop after about this many predictions." };
        var device = CliCommon.DeviceOption();
        var subnet = new Option<string?>("--subnet") { Description = "Evaluate this sub-network (JSON spec) inside the model: strided " +
            "views of its weights, no copies." };
        var precision = TrainingCli.PrecisionOption("--precision",
            "fp32 | bf16 (Linear GEMMs on bf16 inputs with f32 accumulation; layernorm and the loss in f32; attention on bf16 tensor " +
            "cores on CUDA).", "fp32");
        var chunkRows = new Option<int>("--loss-chunk-rows") { Description = "LM head + loss this many rows at a time, so the (N, V) " +
            "logits are never held whole (0: all at once). Same result.", DefaultValueFactory = _ => 0 };
        var cmd = new Command("eval", """
            Perplexity of a model. The token stream is cut into consecutive non-overlapping windows of T tokens (a shorter
            trailing remainder is dropped); in each window every token after the first is predicted from those before it;
            perplexity = exp(mean negative log-likelihood over those predictions). With --stride S < T the windows overlap:
            window i holds tokens [i·S, i·S + T) (whole windows only), the first scores all its tokens after the first and
            every later one only its last S, each predicted from the T − S or more tokens before it in its window.
            """) { model, seqLen, stride, batch, maxTokens, device, subnet, precision, chunkRows, CliCommon.Json };
        var inputOptions = new TokenInputOptions();
        inputOptions.AddTo(cmd);
        cmd.SetAction(p =>
        {
            string dir = p.GetValue(model)!;
            // Options and inputs are checked against the config before any weights are read.
            var config = ModelConfig.Load(dir);
            int T = p.GetValue(seqLen) ?? Math.Min(128, config.MaxPositionEmbeddings);
            config.RequireContext(T);
            if (p.GetValue(stride) is { } st) Perplexity.CheckStride(st, T);
            if (p.GetValue(maxTokens) is { } mt) OptionCheck.AtLeast("--max-tokens", mt, 1);
            OptionCheck.AtLeast("--loss-chunk-rows", p.GetValue(chunkRows), 0, " (0: off)");
            ActiveArchitecture? active = p.GetValue(subnet) is { } sf ? Whittle.Native.Search.SubnetSpec.Load(sf, config) : null;
            using var inputs = inputOptions.Open(p, dir, config.VocabSize);
            var (source, what) = (inputs.Tokens, inputs.Description);
            using var backend = Backends.Create(p.GetValue(device)!);
            using var m = ModelCheckpoint.Load(config, dir, backend);
            // A perplexity computed through NaN weights is NaN: that is a broken model, reported as an error, not a result.
            if (m.NonFiniteTensors.Count > 0)
                throw new InvalidFileException(
                    dir, $"{m.NonFiniteTensors.Count} tensor(s) hold NaN or Inf values (first: '{m.NonFiniteTensors[0]}'); the model " +
                    $"cannot be evaluated");
            CliCommon.SetPrecision(m, PrecisionNames.Parse(p.GetValue(precision)!, "--precision"));
            if (p.GetValue(chunkRows) < 0)
                throw new WhittleException($"--loss-chunk-rows must be >= 0 (0: off), got {p.GetValue(chunkRows)}");
            m.LossChunkRows = p.GetValue(chunkRows);
            var r = Perplexity.Evaluate(m, source, T, p.GetValue(batch), p.GetValue(maxTokens) ?? long.MaxValue, active,
                stride: p.GetValue(stride));
            if (!double.IsFinite(r.Loss))
                throw new WhittleException($"{dir}: the loss came out {r.Loss} on {what} (finite weights, so an overflow in the forward " +
                    $"pass{(m.Precision == Precision.F32 ? "" : "; try --precision fp32")}); no perplexity to report");
            if (p.GetValue(CliCommon.Json))
                Console.WriteLine(
                    new JsonObject { ["loss"] = r.Loss, ["perplexity"] = r.Perplexity, ["tokens"] = r.Tokens,
                    ["windows"] = r.Windows, ["seq_len"] = T, ["stride"] = r.Stride,
                    ["tokens_per_second"] = Math.Round(r.TokensPerSecond, 1),
                    ["precision"] = m.Precision.Name() }.ToJsonString(CliCommon.JsonOptions));
            else Console.WriteLine($"{what}: loss {r.Loss:F5}, perplexity {r.Perplexity:F3} over {r.Tokens:N0} predictions " +
                $"({r.Windows:N0} windows of {T}{(r.Stride == T ? "" : $", stride {r.Stride}")}), {r.TokensPerSecond:N0} tokens/s on " +
                $"{backend.Name}{(m.Precision == Precision.F32 ? "" : $" in {m.Precision.Name()}")}");
            return 0;
        });
        return cmd;
    }
}
