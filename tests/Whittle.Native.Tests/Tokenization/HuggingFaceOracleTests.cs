// Policy: our encoder against Hugging Face tokenizers (npm @anush008/tokenizers, see tools/hf-tokenizers.js) on
// tokenizers our trainer wrote: the bundled Austen one, and a GPT-NeoX/Pythia-structured variant of it (NFC
// normalizer, <|endoftext|> at id 0, <|padding|>, non-special whitespace added tokens, merges as pairs).
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Tokenization;

public class HuggingFaceOracleTests
{
    static readonly Dictionary<string, Tokenizer> Loaded = new();
    static Tokenizer Load(string path) { lock (Loaded) return Loaded.TryGetValue(path, out var t) ? t
        : Loaded[path] = Tokenizer.FromFile(path); }

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var name in new[] { "austen", "neox-like" })
        {
            int line = 0;
            foreach (var (text, ids) in Fixtures.Oracle(Fixtures.Dir("tokenizers", name, "oracle-hf.jsonl")))
                yield return new TestCaseData(name, text, ids).SetName($"{name}:{++line}");
        }
    }

    static string TokenizerPath(string name) =>
        name == "austen" ? Fixtures.AustenTokenizer : Fixtures.Dir("tokenizers", name, "tokenizer.json");

    [TestCaseSource(nameof(Cases))]
    public void EncodesLikeHuggingFace(string name, string text, int[] expected) =>
        Assert.That(Load(TokenizerPath(name)).Encode(text), Is.EqualTo(expected));

    [Test]
    public void NeoXStructureLoads()
    {
        var t = Load(TokenizerPath("neox-like"));
        Assert.That(t.EosId, Is.EqualTo(0));
        Assert.That(t.VocabSize, Is.EqualTo(4100));
        Assert.That(t.AddedTokens.Select(a => a.Content), Is.EquivalentTo(new[] { "<|endoftext|>", "<|padding|>", "    ", "   ", "  " }));
    }

    [Test]
    public void AustenTokenizerIsTheCommittedOne()
    {
        var t = Load(Fixtures.AustenTokenizer);
        Assert.That(t.VocabSize, Is.EqualTo(4096));
        Assert.That(t.EosId, Is.EqualTo(0));
    }
}
