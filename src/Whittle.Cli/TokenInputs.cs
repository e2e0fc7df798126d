namespace Whittle.Cli;

/// <summary>Token input for commands that read text: exactly one of --data DIR, --text FILE, --ids FILE.</summary>
sealed class TokenInputs : IDisposable
{
    TokenDataset? _dataset;

    public required ITokenSource Tokens { get; init; }
    public required string Description { get; init; }

    /// <param name="tokenizer">For --text: the tokenizer file (default: the model's tokenizer.json).</param>
    public static TokenInputs Open(string? data, string? text, string? ids, string modelDir, int vocab, string? tokenizer = null)
    {
        int given = (data is null ? 0 : 1) + (text is null ? 0 : 1) + (ids is null ? 0 : 1);
        if (given != 1) throw new WhittleException("give exactly one of --data DIR, --text FILE or --ids FILE");
        int[] tokens;
        if (data is not null)
        {
            var ds = TokenDataset.Open(data);
            try { TrainingCli.RequireSameTokenizer(modelDir, ds); }
            catch { ds.Dispose(); throw; }
            if (ds.Meta.VocabSize > vocab)
            {
                ds.Dispose();
                throw new WhittleException($"{data}: dataset vocabulary {ds.Meta.VocabSize} is larger than the model's vocab_size {vocab}");
            }
            var split = ds.Val.Length > 0 ? ds.Val : ds.Train;
            return new TokenInputs { _dataset = ds, Tokens = split,
                Description = $"{data} ({(ds.Val.Length > 0 ? "val" : "train")} split)" };
        }
        if (text is not null)
        {
            if (!File.Exists(text)) throw new WhittleException($"--text {text}: file not found");
            var tokFile = tokenizer ?? Path.Combine(modelDir, "tokenizer.json");
            if (!File.Exists(tokFile))
                throw new WhittleException($"--text needs a tokenizer, but {tokFile} does not exist; pass --tokenizer, or tokenize first " +
                $"and pass --data or --ids");
            tokens = Tokenizer.FromFile(tokFile).Encode(File.ReadAllText(text));
        }
        else
        {
            if (!File.Exists(ids)) throw new WhittleException($"--ids {ids}: file not found");
            // A JSON array of ids, or the same numbers separated by whitespace or commas.
            var parts = File.ReadAllText(ids!).Split([' ', '\n', '\r', '\t', ',', '[', ']'], StringSplitOptions.RemoveEmptyEntries);
            tokens = new int[parts.Length];
            for (int i = 0; i < parts.Length; i++)
                if (!int.TryParse(parts[i], out tokens[i]))
                    throw new WhittleException($"--ids {ids}: entry {i + 1} '{parts[i]}' is not an integer");
        }
        foreach (var t in tokens)
            if (t < 0 || t >= vocab) throw new WhittleException($"token id {t} is outside the model's vocabulary [0, {vocab})");
        return new TokenInputs { Tokens = new ArrayTokenSource(tokens), Description = text ?? ids! };
    }

    /// <summary>Consecutive non-overlapping (B, T) windows from the start of the source, at most <paramref name="maxBatches"/>
    /// batches.</summary>
    public static List<int[,]> Windows(ITokenSource source, int T, int B, int maxBatches)
    {
        long windows = Math.Min(source.Length / T, (long)B * maxBatches);
        var result = new List<int[,]>();
        var buf = new int[T];
        for (long w0 = 0; w0 < windows; w0 += B)
        {
            int b = (int)Math.Min(B, windows - w0);
            var batch = new int[b, T];
            for (int i = 0; i < b; i++)
            {
                source.Read((w0 + i) * T, buf);
                for (int j = 0; j < T; j++) batch[i, j] = buf[j];
            }
            result.Add(batch);
        }
        return result;
    }

    public void Dispose() => _dataset?.Dispose();
}

/// <summary>The --data / --text / --tokenizer / --ids options of every command that reads tokens, defined once.</summary>
sealed class TokenInputOptions
{
    public readonly Option<string?> Data = new("--data") { Description = "Token dataset directory (`whittle tokenize`): its validation " +
        "split (train if val is empty)." };
    public readonly Option<string?> Text = new("--text") { Description = "A UTF-8 text file, tokenized with --tokenizer (default: the " +
        "model's tokenizer.json)." };
    public readonly Option<string?> Tokenizer = new("--tokenizer") { Description = "Tokenizer for --text." };
    public readonly Option<string?> Ids = new("--ids") { Description = "A JSON array of token ids (or ids separated by whitespace or " +
        "commas)." };

    public void AddTo(Command cmd) { foreach (var o in new Option[] { Data, Text, Tokenizer, Ids }) cmd.Options.Add(o); }

    public TokenInputs Open(ParseResult p, string modelDir, int vocab) =>
        TokenInputs.Open(p.GetValue(Data), p.GetValue(Text), p.GetValue(Ids), modelDir, vocab, p.GetValue(Tokenizer));
}
