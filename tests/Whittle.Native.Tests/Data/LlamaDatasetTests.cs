// Policy: `whittle tokenize` with Llama-family tokenizers: each document is what Hugging Face's encode(text,
// add_special_tokens=True) gives (BOS first for Llama and Mistral, nothing for Qwen2) followed by EOS, and a document
// longer than the writer's chunk size has exactly the ids of encoding it whole, whether the writer may cut it (Llama 3:
// at line starts) or must not (SentencePiece-style: one piece per segment). The tokenizers themselves are checked
// against Hugging Face in LlamaFamilyOracleTests; here the writer is checked against them.
using System.IO.Compression;
using System.Text;
using Whittle.Native.Data;
using Whittle.Native.Tests.Tokenization;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Data;

public class LlamaDatasetTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = Directory.CreateTempSubdirectory("whittle-llamads-").FullName;
    [TearDown] public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static int[] ReadAll(TokenStream s) { var a = new int[s.Length]; s.Read(0, a); return a; }

    /// <summary>About `chars` characters of Austen: paragraphs, blank lines, dialogue.</summary>
    static string Austen(int chars)
    {
        using var z = new GZipStream(File.OpenRead(Fixtures.AustenCorpus), CompressionMode.Decompress);
        var buf = new char[chars];
        int n = new StreamReader(z, Encoding.UTF8).ReadBlock(buf, 0, chars);
        var text = new string(buf, 0, n);
        return text[..(text.LastIndexOf("\n\n", StringComparison.Ordinal) + 2)];
    }

    int[] Tokenize(Tokenizer tok, string text, string? docStart = null)
    {
        var input = Path.Combine(_dir, $"in-{Guid.NewGuid():N}.txt");
        File.WriteAllText(input, text, new UTF8Encoding(false));
        var outDir = Path.Combine(_dir, $"ds-{Guid.NewGuid():N}");
        DatasetWriter.Write(tok, new TokenizeOptions([input], outDir, DocStart: docStart));
        using var ds = TokenDataset.Open(outDir);
        return ReadAll(ds.Train);
    }

    [TestCase("llama3-like")]
    [TestCase("qwen2-like")]
    [TestCase("tinyllama-like")]
    [TestCase("mistral-like")]
    public void EachDocumentIsEncodedWithSpecialTokensThenEos(string name)
    {
        var tok = LlamaFamilyOracleTests.Load(name);
        string[] docs = ["CHAPTER 1\nIt is a truth universally acknowledged.\n", "CHAPTER 2\n  Twelve 123456 中文 😀\n\n",
            "CHAPTER 3\n</s><|endoftext|> specials in the text\n"];
        var expected = docs.SelectMany(d => tok.Encode(d, addSpecialTokens: true).Append(tok.EosId!.Value)).ToArray();
        Assert.That(Tokenize(tok, string.Concat(docs), "^CHAPTER "), Is.EqualTo(expected));
        Assert.That(tok.SpecialPrefix, name == "qwen2-like" ? Is.Empty : Has.Count.EqualTo(1), "BOS where the template has it");
    }

    /// <summary>Llama 3 cuts a 2.4-million-character document at line starts; TinyLlama (no pre-tokenizer) and
    /// Mistral (Metaspace without split) must not cut it at all; the GPT-2 regex (the Austen tokenizer) only between
    /// words, as a line start after a blank line could change ids (a chunk-final "\n\n" is one piece, but "\n", "\n"
    /// before a letter). Each way the dataset equals the document encoded in one go.</summary>
    [TestCase("llama3-like")]
    [TestCase("tinyllama-like")]
    [TestCase("mistral-like")]
    [TestCase("austen")]
    public void ALongDocumentHasTheIdsOfEncodingItWhole(string name)
    {
        var tok = name == "austen" ? Tokenizer.FromFile(Fixtures.AustenTokenizer) : LlamaFamilyOracleTests.Load(name);
        var text = Austen(2_400_000);
        Assert.That(text.Length, Is.GreaterThan(2 * (1 << 20)), "longer than two of the writer's chunks");
        var got = Tokenize(tok, text);
        int[] expected = [.. tok.Encode(text, addSpecialTokens: true), tok.EosId!.Value];
        Assert.That(got.Length, Is.EqualTo(expected.Length));
        Assert.That(got, Is.EqualTo(expected));
    }

    /// <summary>
    /// meta.json records the ids around every document as the writer put them (the template's prefix, BOS for Llama 3 and
    /// Mistral, and its suffix then EOS), checked here against the tokenizer's template and the shard itself; BosId, the
    /// bos_token_id new models get, is that BOS, or EOS where the template adds none. A meta.json written before the
    /// fields existed still loads (BOS = EOS, as before); ids outside the vocabulary are refused naming the key.
    /// </summary>
    [TestCase("llama3-like")]
    [TestCase("qwen2-like")]
    [TestCase("mistral-like")]
    [TestCase("austen")]
    public void MetaJsonRecordsTheIdsAroundEachDocument(string name)
    {
        var tok = name == "austen" ? Tokenizer.FromFile(Fixtures.AustenTokenizer) : LlamaFamilyOracleTests.Load(name);
        var input = Path.Combine(_dir, "in.txt");
        File.WriteAllText(input, "CHAPTER 1\nIt is a truth.\nCHAPTER 2\nUniversally acknowledged.\n", new UTF8Encoding(false));
        var outDir = Path.Combine(_dir, "ds");
        DatasetWriter.Write(tok, new TokenizeOptions([input], outDir, DocStart: "^CHAPTER "));
        int eos = tok.EosId!.Value;
        int[] suffix = tok.SpecialSuffix is [.., var last] && last == eos ? [.. tok.SpecialSuffix] : [.. tok.SpecialSuffix, eos];
        int[] tokens;
        using (var ds = TokenDataset.Open(outDir))
        {
            Assert.That(ds.Meta.DocumentPrefix, Is.EqualTo(tok.SpecialPrefix));
            Assert.That(ds.Meta.DocumentSuffix, Is.EqualTo(suffix));
            Assert.That(ds.Meta.BosId, Is.EqualTo(tok.SpecialPrefix.Count > 0 ? tok.SpecialPrefix[0] : eos));
            Assert.That(ds.Meta.EosId, Is.EqualTo(eos));
            tokens = ReadAll(ds.Train);
        }
        var first = tok.Encode("CHAPTER 1\nIt is a truth.\n");
        Assert.That(tokens[..(tok.SpecialPrefix.Count + first.Length + suffix.Length)],
            Is.EqualTo(tok.SpecialPrefix.Concat(first).Concat(suffix)), "the shard holds what meta.json says");

        var meta = Path.Combine(outDir, "meta.json");
        var o = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(meta))!.AsObject();
        o.Remove("document_prefix"); o.Remove("document_suffix");
        File.WriteAllText(meta, o.ToJsonString());
        using (var old = TokenDataset.Open(outDir))
        {
            Assert.That(old.Meta.DocumentPrefix, Is.Null);
            Assert.That(old.Meta.BosId, Is.EqualTo(eos), "an older dataset: EOS, as new models were given before");
        }
        o["document_prefix"] = new System.Text.Json.Nodes.JsonArray(tok.VocabSize);
        File.WriteAllText(meta, o.ToJsonString());
        Assert.That(() => TokenDataset.Open(outDir), Throws.InstanceOf<InvalidFileException>().With.Message.Contains("document_prefix"));
    }
}
