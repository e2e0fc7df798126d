// Policy: paths to committed test fixtures, resolved next to the test assembly (the csproj copies fixtures/**).
using System.Text.Json.Nodes;

namespace Whittle.Native.Tests.Tokenization;

internal static class Fixtures
{
    public static string Dir(params string[] parts) => Path.Combine([TestContext.CurrentContext.TestDirectory, "fixtures", .. parts]);

    public static string Gpt2Json => Dir("tokenizers", "gpt2", "tokenizer.json");
    public static string Gpt2Encoder => Dir("tokenizers", "gpt2", "encoder.json");

    /// <summary>The repository root (found by walking up to Whittle.Native.sln), for data/austen.</summary>
    public static string RepoRoot
    {
        get
        {
            var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
            while (d is not null && !File.Exists(Path.Combine(d.FullName, "Whittle.Native.sln"))) d = d.Parent;
            return d?.FullName ?? throw new InvalidOperationException("repository root not found above the test directory");
        }
    }

    public static string AustenTokenizer => Path.Combine(RepoRoot, "data", "austen", "tokenizer.json");
    public static string AustenCorpus => Path.Combine(RepoRoot, "data", "austen", "austen.txt.gz");

    /// <summary>Lines of a {"text": ..., "ids": [...]} oracle file (ids from Hugging Face tokenizers).</summary>
    public static IEnumerable<(string Text, int[] Ids)> Oracle(string path)
    {
        foreach (var line in File.ReadLines(path))
        {
            if (line.Length == 0) continue;
            var o = JsonNode.Parse(line)!;
            yield return (o["text"]!.GetValue<string>(), o["ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray());
        }
    }
}
