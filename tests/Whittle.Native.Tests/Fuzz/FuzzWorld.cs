using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tests.Cli;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Fuzz;

/// <summary>
/// A small, valid set of every input the CLI reads, made once per test run: the bundled 4096-token tokenizer, a dataset
/// of a few thousand tokens in several shards, a tiny model (with that tokenizer) and a one-step training run with a
/// checkpoint. Tests copy what they mutate; the originals stay valid.
/// </summary>
sealed class FuzzWorld
{
    static readonly Lazy<FuzzWorld> Shared = new(() => new FuzzWorld());
    public static FuzzWorld Instance => Shared.Value;

    public string Root { get; }
    public string Tokenizer { get; }
    public string Dataset { get; }
    public string Model { get; }
    /// <summary>A run directory holding checkpoints/step-0000001 (with trainer_state.json).</summary>
    public string Run { get; }
    public string Checkpoint => Path.Combine(Run, "checkpoints", "step-0000001");
    public string Subnet { get; }
    public string Ids { get; }
    public string Text { get; }

    public static readonly GptNeoXConfig Config = new()
    {
        VocabSize = 4096, HiddenSize = 16, NumLayers = 2, NumHeads = 2, IntermediateSize = 32, MaxPositionEmbeddings = 64,
    };

    /// <summary>The training flags every run over the world's data uses: one short step, a tiny evaluation; <paramref name="set"/> replaces
    /// or adds one.</summary>
    /// <paramref name="init"/>: add pretrain's --init (the world's model); distill and salt have no such flag.
    public string[] TrainFlags(string data, string run, (string Option, string Value)? set = null, bool init = true)
    {
        var flags = new List<(string, string)> { ("--data", data), ("--out", run), ("--steps", "1"), ("--seq-len", "8"),
            ("--batch-size", "2"), ("--eval-tokens", "16"), ("--save-every", "1") };
        if (init) flags.Add(("--init", Model));
        if (set is { } s) { flags.RemoveAll(f => f.Item1 == s.Option); flags.Add((s.Option, s.Value)); }
        return flags.SelectMany(f => new[] { f.Item1, f.Item2 }).ToArray();
    }

    FuzzWorld()
    {
        Root = Path.Combine(Path.GetTempPath(), $"whittle-fuzzworld-{Environment.ProcessId}");
        if (Directory.Exists(Root)) Directory.Delete(Root, true);
        Directory.CreateDirectory(Root);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(Root, true); } catch (IOException) { } };
        Tokenizer = TestData.TokenizerPath;

        var chapters = Enumerable.Range(0, 24).Select(i =>
            $"CHAPTER {i}\n\nIt is a truth universally acknowledged, that a single man in possession of a good fortune, number {i}, must " +
                $"be in want of a wife. <|endoftext|> é\n");
        Text = Path.Combine(Root, "text.txt");
        File.WriteAllText(Text, string.Concat(chapters));
        Dataset = Path.Combine(Root, "data");
        DatasetWriter.Write(
            Native.Tokenization.Tokenizer.FromFile(Tokenizer),
            new TokenizeOptions([Text], Dataset, ValFraction: 0.3, Seed: 5, DocStart: "^CHAPTER ", ShardTokens: 256));

        Model = Path.Combine(Root, "model");
        using (var m = GptNeoX.CreateRandom(Config, CpuBackend.Instance, 7))
            GptNeoXCheckpoint.Save(m, Model, extraFiles: [Tokenizer]);

        Ids = Path.Combine(Root, "ids.json");
        File.WriteAllText(Ids, "[" + string.Join(",", Enumerable.Range(0, 40).Select(i => i * 97 % 4096)) + "]");
        Subnet = Path.Combine(Root, "subnet.json");
        File.WriteAllText(Subnet, """{"embed_dim": 8, "layers": [1, 0], "heads": [1, 2], "intermediate_size": 16}""");

        Run = Path.Combine(Root, "run");
        var r = InProcessCli.Run(["pretrain", .. TrainFlags(Dataset, Run)]);
        if (r.Exit != 0 || !File.Exists(Path.Combine(Checkpoint, "trainer_state.json")))
            throw new InvalidOperationException($"fuzz world: the seed run failed ({r.Exit}): {r.Stderr}");
    }

    /// <summary>A fresh copy of a directory under the world's scratch space.</summary>
    public string CopyOf(string dir, string name)
    {
        var dst = Path.Combine(Root, "cases", $"{name}-{Guid.NewGuid():N}");
        CopyDirectory(dir, dst);
        return dst;
    }

    public static void CopyDirectory(string src, string dst)
    {
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(src)) CopyDirectory(d, Path.Combine(dst, Path.GetFileName(d)));
    }
}
