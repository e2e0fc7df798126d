// Policy: one run, three implementations, same text and vocabularies: ours, Microsoft.ML.Tokenizers (each of its three
// byte-level BPE kinds, tests/.../MicrosoftTokenizers.cs) and Hugging Face tokenizers (Rust, through
// tools/hf-tokenizers.js in node). Speed: the whole Austen corpus encoded as one string on one thread by a fresh
// tokenizer (empty word cache) after a warm-up, rounds interleaved, best round kept. Exactness: ids against Hugging
// Face's on every line of the committed oracle files and on the whole corpus. Prints markdown for bench/RESULTS.md.
// Run through bench/tokenizers-compare.sh (installs the npm package where missing and sets NODE_PATH).
using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Whittle.Native.Tests.Tokenization;
using Ours = Whittle.Native.Tokenization.Tokenizer;

static class TokenizerCompare
{
    /// <summary>A vocabulary compared: its tokenizer.json and the Hugging Face oracle files made with it.</summary>
    sealed record Vocabulary(string Name, string TokenizerJson, string[] OracleFiles);

    /// <summary>An implementation under test: encodes text with a tokenizer built fresh from the vocabulary.</summary>
    sealed record Implementation(string Name, Func<string, Func<string, IReadOnlyList<int>>> Build);

    public static void Run(string[] args)
    {
        int rounds = args is ["--rounds", var r] ? int.Parse(r) : 3;
        var root = TokenizerBench.RepoRoot();
        string Fixture(params string[] p) => Path.Combine([root, "tests", "Whittle.Native.Tests", "fixtures", "tokenizers", .. p]);
        var vocabularies = new[]
        {
            new Vocabulary("GPT-2 (50,257)", Fixture("gpt2", "tokenizer.json"),
                [Fixture("gpt2", "oracle-edge.jsonl"), Fixture("gpt2", "oracle-austen.jsonl"), Fixture("gpt2", "oracle-astral.jsonl")]),
            new Vocabulary("Austen BPE (4,096)", Path.Combine(root, "data", "austen", "tokenizer.json"),
                [Fixture("austen", "oracle-hf.jsonl")]),
        };
        var implementations = new List<Implementation>
        {
            new("Whittle.Native", path => { var t = Ours.FromFile(path); return text => t.Encode(text); }),
        };
        foreach (var kind in Enum.GetValues<MicrosoftTokenizers.Kind>())
        {
            implementations.Add(new($"Microsoft.ML.Tokenizers {kind}", path =>
            {
                var t = MicrosoftTokenizers.Create(path, kind);
                return text => MicrosoftTokenizers.Encode(t, text);
            }));
        }
        string corpus = Path.Combine(root, "data", "austen", "austen.txt.gz");
        string text = ReadCorpus(corpus);
        int bytes = Encoding.UTF8.GetByteCount(text);
        string hfScript = Path.Combine(root, "tools", "hf-tokenizers.js");
        string scratch = Directory.CreateTempSubdirectory("tokenizers-compare-").FullName;

        // seconds[vocabulary][implementation], best over rounds; Hugging Face is the last column.
        var best = vocabularies.ToDictionary(v => v, _ => Enumerable.Repeat(double.MaxValue, implementations.Count + 1).ToArray());
        var idCounts = vocabularies.ToDictionary(v => v, _ => new int[implementations.Count + 1]);
        var corpusIds = vocabularies.ToDictionary(v => v, _ => new IReadOnlyList<int>[implementations.Count]);
        for (int round = 0; round < rounds; round++)
        {
            foreach (var v in vocabularies)
            {
                for (int i = 0; i < implementations.Count; i++)
                {
                    if (round == 0) implementations[i].Build(v.TokenizerJson)(text);   // JIT warm-up
                    var encode = implementations[i].Build(v.TokenizerJson);
                    var sw = Stopwatch.StartNew();
                    var ids = encode(text);
                    best[v][i] = Math.Min(best[v][i], sw.Elapsed.TotalSeconds);
                    idCounts[v][i] = ids.Count;
                    corpusIds[v][i] = ids;
                }
                string idsOut = Path.Combine(scratch, $"hf-{Array.IndexOf(vocabularies, v)}.json");
                var hf = RunNode(hfScript, "time", v.TokenizerJson, corpus, round == 0 ? idsOut : null);
                best[v][^1] = Math.Min(best[v][^1], hf["seconds"]!.GetValue<double>());
                idCounts[v][^1] = hf["ids"]!.GetValue<int>();
                Console.Error.WriteLine($"round {round + 1}/{rounds}: {v.Name} done");
            }
        }

        Console.WriteLine($"- Date: {DateTime.UtcNow:yyyy-MM-dd}. Machine: `{CpuModel()}`, {Environment.ProcessorCount} cores; " +
            $"load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]} at the end of the run.");
        Console.WriteLine($"- Text: `data/austen/austen.txt.gz` decompressed ({bytes:N0} bytes), encoded as one string on one thread;\n" +
            $"  best of {rounds} interleaved rounds, each by a fresh tokenizer after a warm-up.");
        Console.WriteLine($"- Command: `bash bench/tokenizers-compare.sh` (Microsoft.ML.Tokenizers 2.0.1,\n" +
            "  Hugging Face tokenizers through `@anush008/tokenizers`).");
        Console.WriteLine();
        Console.WriteLine("| vocabulary | implementation | MB/s | M ids/s | ids | vs Whittle.Native |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|");
        var names = implementations.Select(i => i.Name).Append("Hugging Face tokenizers").ToArray();
        foreach (var v in vocabularies)
        {
            for (int i = 0; i < names.Length; i++)
            {
                double s = best[v][i];
                Console.WriteLine($"| {v.Name} | {names[i]} | {bytes / 1e6 / s:F2} | {idCounts[v][i] / 1e6 / s:F2} | " +
                    $"{idCounts[v][i]:N0} | {best[v][0] / s:F2}× |");
            }
        }

        Console.WriteLine();
        Console.WriteLine("Exactness against Hugging Face's ids (oracle lines that match / lines; whole corpus as one string):");
        Console.WriteLine();
        var oracleNames = vocabularies.SelectMany(v => v.OracleFiles.Select(f => $"{v.Name}: `{Path.GetFileName(f)}`")).ToList();
        Console.WriteLine($"| implementation | {string.Join(" | ", oracleNames)} | " +
            $"{string.Join(" | ", vocabularies.Select(v => $"{v.Name}: whole corpus"))} |");
        Console.WriteLine($"|---|{string.Concat(Enumerable.Repeat("---:|", oracleNames.Count + vocabularies.Length))}");
        for (int i = 0; i < implementations.Count; i++)
        {
            var cells = new List<string>();
            foreach (var v in vocabularies)
            {
                var encode = implementations[i].Build(v.TokenizerJson);
                foreach (var file in v.OracleFiles)
                {
                    var lines = Oracle(file).ToList();
                    cells.Add($"{lines.Count(l => encode(l.Text).SequenceEqual(l.Ids))}/{lines.Count}");
                }
            }
            foreach (var v in vocabularies)
            {
                var hfIds = JsonNode.Parse(File.ReadAllText(Path.Combine(scratch, $"hf-{Array.IndexOf(vocabularies, v)}.json")))!
                    .AsArray().Select(x => x!.GetValue<int>()).ToArray();
                cells.Add(CompareIds(corpusIds[v][i], hfIds));
            }
            Console.WriteLine($"| {implementations[i].Name} | {string.Join(" | ", cells)} |");
        }
        Directory.Delete(scratch, recursive: true);
    }

    /// <summary>"identical", or where the first difference is (Hugging Face's ids are the reference).</summary>
    static string CompareIds(IReadOnlyList<int> ids, int[] reference)
    {
        int n = Math.Min(ids.Count, reference.Length), first = 0;
        while (first < n && ids[first] == reference[first]) first++;
        return first == n && ids.Count == reference.Length
            ? "identical"
            : $"differs from id {first:N0} ({ids.Count:N0} ids vs {reference.Length:N0})";
    }

    static IEnumerable<(string Text, int[] Ids)> Oracle(string path) =>
        File.ReadLines(path).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!)
            .Select(o => ((string)o["text"]!, o["ids"]!.AsArray().Select(x => (int)x!).ToArray()));

    static string ReadCorpus(string path)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        return new StreamReader(gz, Encoding.UTF8).ReadToEnd();
    }

    static JsonNode RunNode(string script, params string?[] args)
    {
        var psi = new ProcessStartInfo("node") { RedirectStandardOutput = true };
        psi.ArgumentList.Add(script);
        foreach (var a in args) if (a is not null) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"node {script} {string.Join(' ', args)} exited {p.ExitCode}");
        return JsonNode.Parse(output)!;
    }

    static string CpuModel() =>
        File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown";
}
