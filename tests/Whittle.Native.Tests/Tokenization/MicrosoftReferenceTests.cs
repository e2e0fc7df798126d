// Policy: Microsoft.ML.Tokenizers as a second, in-process reference for our encoder on byte-level BPE vocabularies
// (GPT-2's, the bundled Austen one). It is trusted only as far as Hugging Face's ids show: each of its kinds used
// here must first give the oracle files' ids on every line (a package update that breaks that fails here, naming
// the kind; its CodeGen kind does not, see bench/RESULTS.md, and is not used). Then ours must give the same ids where
// no oracle file reaches: the whole Austen corpus, and generated mixes of scripts, whitespace runs, contractions,
// digits and special tokens. Its one known gap: letters and digits outside the BMP (𝐀, 𝟏), which its .NET regex
// sees as UTF-16 surrogates, not \p{L} or \p{N}; Hugging Face's ids for those are in gpt2/oracle-astral.jsonl
// (made by `node tools/hf-tokenizers.js oracle fixtures/tokenizers/gpt2/tokenizer.json` over that file's texts),
// which ours matches (Gpt2OracleTests) and the reference does not.
using FsCheck;
using FsCheck.Fluent;
using Whittle.Native.Tokenization;
using static Whittle.Native.Tests.Tokenization.MicrosoftTokenizers;

namespace Whittle.Native.Tests.Tokenization;

public class MicrosoftReferenceTests
{
    static readonly Kind[] ExactKinds = [Kind.Bpe, Kind.Tiktoken];
    static readonly string[] Vocabularies = ["gpt2", "austen"];

    static readonly Dictionary<(string, Kind), Microsoft.ML.Tokenizers.Tokenizer> Theirs = new();
    static readonly Dictionary<string, Tokenizer> Ours = new();

    static string PathOf(string vocabulary) => vocabulary == "gpt2" ? Fixtures.Gpt2Json : Fixtures.AustenTokenizer;

    static Microsoft.ML.Tokenizers.Tokenizer Reference(string vocabulary, Kind kind)
    {
        lock (Theirs)
            return Theirs.TryGetValue((vocabulary, kind), out var t) ? t : Theirs[(vocabulary, kind)] = Create(PathOf(vocabulary), kind);
    }

    static Tokenizer Our(string vocabulary)
    {
        lock (Ours) return Ours.TryGetValue(vocabulary, out var t) ? t : Ours[vocabulary] = Tokenizer.FromFile(PathOf(vocabulary));
    }

    static IEnumerable<string> OracleFiles(string vocabulary) => vocabulary == "gpt2"
        ? [Fixtures.Dir("tokenizers", "gpt2", "oracle-edge.jsonl"), Fixtures.Dir("tokenizers", "gpt2", "oracle-austen.jsonl")]
        : [Fixtures.Dir("tokenizers", "austen", "oracle-hf.jsonl")];

    public static IEnumerable<TestCaseData> VocabularyAndKind() =>
        from v in Vocabularies from k in ExactKinds select new TestCaseData(v, k).SetName($"{v}:{k}");

    [TestCaseSource(nameof(VocabularyAndKind))]
    public void ReferenceGivesHuggingFaceIdsOnEveryOracleLine(string vocabulary, Kind kind)
    {
        var reference = Reference(vocabulary, kind);
        foreach (var file in OracleFiles(vocabulary))
        {
            int line = 0;
            foreach (var (text, ids) in Fixtures.Oracle(file))
                Assert.That(Encode(reference, text), Is.EqualTo(ids), $"{Path.GetFileName(file)} line {++line}");
        }
    }

    [Test]
    public void CodeGenKindIsNotExactSoItIsNotAReference()
    {
        // What the benchmark table reports: CodeGen maps space runs to CodeGen's own added tokens (ids above GPT-2's
        // vocabulary), so it cannot be a reference. If a release fixes that, it may join ExactKinds.
        var codeGen = Reference("gpt2", Kind.CodeGen);
        var mismatched = Fixtures.Oracle(Fixtures.Dir("tokenizers", "gpt2", "oracle-edge.jsonl"))
            .Count(o => !Encode(codeGen, o.Text).SequenceEqual(o.Ids));
        Assert.That(mismatched, Is.GreaterThan(0));
    }

    [Test]
    public void AstralLettersAreTheReferencesKnownGap()
    {
        // If a release of the package closes the gap, astral letters can return to the generated mixes below.
        var oracle = Fixtures.Oracle(Fixtures.Dir("tokenizers", "gpt2", "oracle-astral.jsonl")).ToList();
        foreach (var kind in ExactKinds)
            Assert.That(oracle.Count(o => !Encode(Reference("gpt2", kind), o.Text).SequenceEqual(o.Ids)), Is.GreaterThan(0), $"{kind}");
    }

    [TestCaseSource(nameof(VocabularyAndKind))]
    public void WholeAustenCorpusEncodesLikeTheReference(string vocabulary, Kind kind)
    {
        using var gz = new System.IO.Compression.GZipStream(File.OpenRead(Fixtures.AustenCorpus),
            System.IO.Compression.CompressionMode.Decompress);
        var text = new StreamReader(gz, System.Text.Encoding.UTF8).ReadToEnd();
        var ours = Our(vocabulary).Encode(text);
        var theirs = Encode(Reference(vocabulary, kind), text);
        int first = 0;
        while (first < Math.Min(ours.Length, theirs.Count) && ours[first] == theirs[first]) first++;
        Assert.That(ours, Has.Length.EqualTo(theirs.Count), $"first difference at id {first}");
        Assert.That(first, Is.EqualTo(ours.Length), "index of the first id that differs");
    }

    // Pieces where byte-level BPE implementations tend to differ: whitespace runs before words and at the end
    // (GPT-2's \s+(?!\S)), contractions, digits, non-ASCII letters and marks, emoji (astral, but not letters),
    // control characters, a BOM, no-break and ideographic spaces, and the special token written in the text. No
    // astral letters: there the reference is known to differ (AstralLettersAreTheReferencesKnownGap).
    static readonly string[] Atoms =
    [
        "the", "The", " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "'s", "'ll", "'T", "don't", "42", "3.14", "½", "Ⅻ",
        "é", "e\u0301", "ß", "Ærø", "日本", "한국어", "مرحبا", "🤖", "👩‍👩‍👧", "\u00a0", "\u3000", "\u2028",
        "\u0000", "\uFEFF", "!?", "...", "--", "<|endoftext|>", "ÿ",
    ];

    [TestCaseSource(nameof(VocabularyAndKind))]
    public void GeneratedMixesEncodeLikeTheReference(string vocabulary, Kind kind)
    {
        var ours = Our(vocabulary);
        var reference = Reference(vocabulary, kind);
        var mixes = Gen.Elements(Atoms).ListOf().Select(l => string.Concat(l)).ToArbitrary();
        Prop.ForAll(mixes, s => ours.Encode(s).SequenceEqual(Encode(reference, s)))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }
}
