// Policy: decode(encode(s)) == s for any valid UTF-8 (FsCheck over arbitrary strings with lone surrogates removed,
// plus generated mixes of scripts, emoji, whitespace and special tokens), on tokenizers without a normalizer.
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Tokenization;

public class RoundTripTests
{
    static Tokenizer? _gpt2, _austen;
    static Tokenizer Gpt2 => _gpt2 ??= Tokenizer.FromFile(Fixtures.Gpt2Json);
    static Tokenizer Austen => _austen ??= Tokenizer.FromFile(Fixtures.AustenTokenizer);

    /// <summary>Replaces unpaired surrogates (not representable in UTF-8) with U+FFFD, leaving a valid UTF-8 string.</summary>
    static string Valid(string? s) => s is null ? "" : Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(s));

    static readonly string[] Atoms = ["the", " ", "  ", "\n", "\t", "'s", "'ll", "é", "e\u0301", "日本", "🤖", "𝐀𝐁", "\u00a0", "<|endoftext|>",
        "42", "!?", "\r\n", "ÿ", "\u0000", "\uFEFF"];

    static Gen<string> Mixed() => Gen.Elements(Atoms).ListOf().Select(l => string.Concat(l));

    [Test]
    public void ArbitraryStringsRoundTrip()
    {
        Prop.ForAll(ArbMap.Default.ArbFor<string>(), (string raw) =>
        {
            var s = Valid(raw);
            return Gpt2.Decode(Gpt2.Encode(s)) == s && Austen.Decode(Austen.Encode(s)) == s;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));
    }

    [Test]
    public void MixedScriptsRoundTrip()
    {
        Prop.ForAll(Mixed().ToArbitrary(), s => Gpt2.Decode(Gpt2.Encode(s)) == s && Austen.Decode(Austen.Encode(s)) == s)
            .Check(Config.QuickThrowOnFailure.WithMaxTest(500));
    }

    [Test]
    public void WholeAustenCorpusRoundTrips()
    {
        using var gz = new System.IO.Compression.GZipStream(
            File.OpenRead(Fixtures.AustenCorpus), System.IO.Compression.CompressionMode.Decompress);
        var text = new StreamReader(gz, Encoding.UTF8).ReadToEnd();
        var ids = Austen.Encode(text);
        Assert.That(Austen.Decode(ids), Is.EqualTo(text));
        Assert.That(ids.Length, Is.LessThan(text.Length / 3), "a 4096-token BPE trained on this text compresses it well");
    }
}
