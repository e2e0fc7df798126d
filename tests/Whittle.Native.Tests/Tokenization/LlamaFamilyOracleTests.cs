// Policy: our tokenizer against Hugging Face tokenizers (Rust, npm @anush008/tokenizers) on Llama-family tokenizer.json
// files built by tools/fixtures/make_llama_tokenizers.js: ids without and with special tokens, decoding with and without
// skip_special_tokens, invalid UTF-8 read as a file reader reads it, lone surrogates, and decode-only id sequences.
// The splits oracle checks each pre-tokenizer's pieces against Hugging Face's (Oniguruma) on random strings.
using System.Text;
using System.Text.Json.Nodes;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Tokenization;

public class LlamaFamilyOracleTests
{
    static readonly string[] Names = ["llama3-like", "qwen2-like", "added-flags", "tinyllama-like", "mistral-like", "spm-unk"];
    static readonly Dictionary<string, Tokenizer> Loaded = [];

    internal static Tokenizer Load(string name)
    {
        lock (Loaded) return Loaded.TryGetValue(name, out var t) ? t : Loaded[name] = Tokenizer.FromFile(TokenizerPath(name));
    }

    internal static string TokenizerPath(string name) => Fixtures.Dir("tokenizers", name, "tokenizer.json");

    static int[] Ints(JsonNode? n) => n!.AsArray().Select(x => x!.GetValue<int>()).ToArray();

    /// <summary>The text of an oracle line: raw bytes decoded as a file reader decodes them, UTF-16 code units, or JSON text.</summary>
    static string TextOf(JsonObject o)
    {
        if (o["bytes"] is { } hex)
        {
            var text = new UTF8Encoding(false, false).GetString(Convert.FromHexString(hex.GetValue<string>()));
            Assert.That(text, Is.EqualTo(o["text"]!.GetValue<string>()), ".NET and Node replace invalid UTF-8 alike");
            return text;
        }
        if (o["utf16"] is { } units) return new string(Ints(units).Select(u => (char)u).ToArray());
        return o["text"]!.GetValue<string>();
    }

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var name in Names)
        {
            int line = 0;
            foreach (var l in File.ReadLines(Fixtures.Dir("tokenizers", name, "oracle.jsonl")))
                yield return new TestCaseData(name, l).SetName($"{name}:{++line}");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesHuggingFace(string name, string line)
    {
        var o = JsonNode.Parse(line)!.AsObject();
        var tok = Load(name);
        if (o["decode_ids"] is { } only)
        {
            Assert.That(tok.Decode(Ints(only)), Is.EqualTo(o["decoded"]!.GetValue<string>()));
            Assert.That(tok.Decode(Ints(only), skipSpecialTokens: true), Is.EqualTo(o["decoded_skip"]!.GetValue<string>()));
            return;
        }
        var text = TextOf(o);
        var special = Ints(o["ids_special"]);
        Assert.That(tok.Encode(text), Is.EqualTo(Ints(o["ids"])), "without special tokens");
        Assert.That(tok.Encode(text, addSpecialTokens: true), Is.EqualTo(special), "with special tokens");
        Assert.That(tok.Decode(special), Is.EqualTo(o["decoded"]!.GetValue<string>()), "decode");
        Assert.That(tok.Decode(special, skipSpecialTokens: true), Is.EqualTo(o["decoded_skip"]!.GetValue<string>()),
            "decode, skipping specials");
    }

    static readonly Lazy<JsonArray> SplitConfigs = new(() =>
        JsonNode.Parse(File.ReadLines(Fixtures.Dir("tokenizers", "splits", "oracle.jsonl")).First())!["pre_tokenizers"]!.AsArray());

    public static IEnumerable<TestCaseData> SplitCases()
    {
        int line = 0;
        foreach (var l in File.ReadLines(Fixtures.Dir("tokenizers", "splits", "oracle.jsonl")).Skip(1))
            yield return new TestCaseData(l).SetName($"splits:{++line}");
    }

    [TestCaseSource(nameof(SplitCases))]
    public void PreTokenizerPiecesMatchHuggingFace(string line)
    {
        var o = JsonNode.Parse(line)!;
        var config = SplitConfigs.Value[o["pre_tokenizer"]!.GetValue<int>()]!;
        var pre = TokenizerLoader.ReadPreTokenizer(JsonField.FromNode(config.DeepClone(), "splits"));
        var expected = o["pieces"]!.AsArray().Select(p => p!.GetValue<string>()).ToArray();
        Assert.That(pre.Pieces(o["text"]!.GetValue<string>()), Is.EqualTo(expected), config.ToJsonString());
    }

    [Test]
    public void TemplatesAndEosAreTheFamilies()
    {
        var llama3 = Load("llama3-like");
        Assert.That(llama3.SpecialPrefix, Is.EqualTo(new[] { llama3.AddedTokens.Single(a => a.Content == "<|begin_of_text|>").Id }));
        Assert.That(llama3.SpecialSuffix, Is.Empty);
        Assert.That(llama3.EosId, Is.EqualTo(llama3.AddedTokens.Single(a => a.Content == "<|end_of_text|>").Id));
        var qwen = Load("qwen2-like");
        Assert.That(qwen.SpecialPrefix, Is.Empty, "Qwen2 adds no BOS");
        Assert.That(qwen.EosId, Is.EqualTo(qwen.AddedTokens.Single(a => a.Content == "<|endoftext|>").Id));
        var tiny = Load("tinyllama-like");
        Assert.That((tiny.SpecialPrefix, tiny.EosId), Is.EqualTo((new[] { 1 }, (int?)2)));
        Assert.That(Load("spm-unk").SpecialSuffix, Is.EqualTo(new[] { 2 }));
    }

    [Test]
    public void SafeCutsFollowThePreTokenizer()
    {
        Assert.That(Load("llama3-like").SafeCuts, Is.EqualTo((true, true)));
        Assert.That(Load("qwen2-like").SafeCuts, Is.EqualTo((true, true)));
        Assert.That(Load("added-flags").SafeCuts, Is.EqualTo((false, false)), "lstrip / rstrip tokens");
        Assert.That(Load("tinyllama-like").SafeCuts, Is.EqualTo((false, false)), "one piece per segment");
        Assert.That(Load("mistral-like").SafeCuts, Is.EqualTo((false, false)), "Metaspace without split");
        Assert.That(Load("spm-unk").SafeCuts, Is.EqualTo((false, true)), "Metaspace splits before each space only");
        Assert.That(Tokenizer.FromFile(Fixtures.Gpt2Json).SafeCuts, Is.EqualTo((false, true)), "GPT-2 keeps a final \\n\\n whole");
        Assert.That(Tokenizer.FromFile(Fixtures.Gpt2Encoder).SafeCuts, Is.EqualTo((false, true)), "the same from vocab.bpe");
    }
}
