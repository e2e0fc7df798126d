// Policy: tokenizer encode throughput on the bundled Austen corpus (4 MB), measured the same way as
// tools/hf-tokenizers.js measures Hugging Face: the whole text as one string (one thread), and the chapters as a
// batch (all cores). A cold tokenizer (empty word cache) per measurement, so the cache does not flatter us.
// Microsoft.ML.Tokenizers' three byte-level BPE kinds on the same text and vocabulary beside ours (Vocabulary: the
// bundled 4096-token BPE or GPT-2's). Quick side-by-side figures: `tokenizer-quick` (ours alone), and
// `bash bench/tokenizers-compare.sh` (ours, Microsoft's and Hugging Face's in one run, with exactness).
using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;
using BenchmarkDotNet.Attributes;
using Whittle.Native.Tests.Tokenization;
using Whittle.Native.Tokenization;

public class TokenizerBench
{
    string _text = "", _path = "";
    string[] _docs = [];

    [Params("austen", "gpt2")] public string Vocabulary { get; set; } = "austen";

    [GlobalSetup]
    public void Setup()
    {
        (_path, _text, _docs) = Load();
        if (Vocabulary == "gpt2") _path = Path.Combine(RepoRoot(), "tests/Whittle.Native.Tests/fixtures/tokenizers/gpt2/tokenizer.json");
    }

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Whittle.Native.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    public static (string Path, string Text, string[] Docs) Load()
    {
        var root = RepoRoot();
        using var gz = new GZipStream(File.OpenRead(Path.Combine(root, "data/austen/austen.txt.gz")), CompressionMode.Decompress);
        var text = new StreamReader(gz, Encoding.UTF8).ReadToEnd();
        // Documents as `whittle tokenize --doc-start '^(CHAPTER|Chapter) '` cuts them.
        var starts = Regex.Matches(
            text, "^(CHAPTER|Chapter) ",
            RegexOptions.Multiline).Select(m => m.Index).Where(i => i > 0).Prepend(0).Append(text.Length).ToArray();
        var docs = starts.Zip(starts.Skip(1), (a, b) => text[a..b]).ToArray();
        return (Path.Combine(root, "data/austen/tokenizer.json"), text, docs);
    }

    [Benchmark] public int EncodeWholeText() => Tokenizer.FromFile(_path).Encode(_text).Length;
    [Benchmark] public int EncodeChaptersParallel() => Tokenizer.FromFile(_path).EncodeBatch(_docs).Sum(d => d.Length);

    [Benchmark] public int MicrosoftBpeWholeText() => EncodeMicrosoft(MicrosoftTokenizers.Kind.Bpe);
    [Benchmark] public int MicrosoftTiktokenWholeText() => EncodeMicrosoft(MicrosoftTokenizers.Kind.Tiktoken);
    [Benchmark] public int MicrosoftCodeGenWholeText() => EncodeMicrosoft(MicrosoftTokenizers.Kind.CodeGen);

    int EncodeMicrosoft(MicrosoftTokenizers.Kind kind) => MicrosoftTokenizers.Encode(MicrosoftTokenizers.Create(_path, kind), _text).Count;

    /// <summary>Best of 3 cold runs of each mode, printed as MB/s (same shape as tools/hf-tokenizers.js bench).</summary>
    public static void Quick()
    {
        var (path, text, docs) = Load();
        double mb = Encoding.UTF8.GetByteCount(text) / 1e6;
        double Best(Func<Tokenizer, int> f)
        {
            f(Tokenizer.FromFile(path));   // JIT warm-up
            double best = double.MaxValue;
            for (int i = 0; i < 3; i++)
            {
                var tok = Tokenizer.FromFile(path);
                var sw = System.Diagnostics.Stopwatch.StartNew();
                f(tok);
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            return best;
        }
        double t1 = Best(t => t.Encode(text).Length), t2 = Best(t => t.EncodeBatch(docs).Sum(d => d.Length));
        Console.WriteLine($"{{\"bytes\":{mb * 1e6:F0},\"documents\":{docs.Length}," +
            $"\"single\":{{\"seconds\":{t1:F4},\"mb_per_s\":{mb / t1:F2}}}," +
            $"\"batch\":{{\"seconds\":{t2:F4},\"mb_per_s\":{mb / t2:F2}}},\"cores\":{Environment.ProcessorCount}}}");
    }
}
