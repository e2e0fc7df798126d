// Policy: our encoder against ids Hugging Face tokenizers (Rust) produced for the same text and tokenizer files.
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Tokenization;

public class Gpt2OracleTests
{
    static Tokenizer? _json, _pair;
    static Tokenizer Json => _json ??= Tokenizer.FromFile(Fixtures.Gpt2Json);
    static Tokenizer Pair => _pair ??= Tokenizer.FromFile(Fixtures.Gpt2Encoder);

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var file in new[] { "oracle-edge.jsonl", "oracle-austen.jsonl", "oracle-astral.jsonl" })
        {
            int line = 0;
            foreach (var (text, ids) in Fixtures.Oracle(Fixtures.Dir("tokenizers", "gpt2", file)))
                yield return new TestCaseData(text, ids).SetName($"{file}:{++line}");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void TokenizerJsonMatchesHuggingFace(string text, int[] expected)
    {
        Assert.That(Json.Encode(text), Is.EqualTo(expected));
        Assert.That(Json.Decode(expected), Is.EqualTo(text));
    }

    [TestCaseSource(nameof(Cases))]
    public void EncoderJsonAndVocabBpeMatchHuggingFace(string text, int[] expected) =>
        Assert.That(Pair.Encode(text), Is.EqualTo(expected));

    [Test]
    public void Gpt2Properties()
    {
        Assert.That(Json.VocabSize, Is.EqualTo(50257));
        Assert.That(Json.EosId, Is.EqualTo(50256));
        Assert.That(Pair.EosId, Is.EqualTo(50256));
        Assert.That(Json.Sha256, Has.Length.EqualTo(64));
        Assert.That(Json.Sha256, Is.Not.EqualTo(Pair.Sha256));
    }

    [Test]
    public void BatchEncodingEqualsOneByOne()
    {
        var texts = Fixtures.Oracle(Fixtures.Dir("tokenizers", "gpt2", "oracle-austen.jsonl")).Select(x => x.Text).ToArray();
        var batch = Json.EncodeBatch(texts);
        for (int i = 0; i < texts.Length; i++) Assert.That(batch[i], Is.EqualTo(Json.Encode(texts[i])));
    }
}
