// Policy: Microsoft.ML.Tokenizers 2.0.1, the .NET peer of our tokenizer, built from the same Hugging Face
// tokenizer.json that ours reads, in each of the three ways the package can run a byte-level BPE. The tests use the
// kinds that match Hugging Face's ids on every oracle line as an independent in-process reference; bench/ (which
// compiles this file too) measures all three against ours and Hugging Face's. The engine does not use it.
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Whittle.Native.Tests.Tokenization;

public static class MicrosoftTokenizers
{
    public enum Kind
    {
        /// <summary>BpeTokenizer with ByteLevel = true: merges applied by rank, as Hugging Face's BPE model does.</summary>
        Bpe,
        /// <summary>TiktokenTokenizer over the vocabulary's byte strings ranked by id (tiktoken's merge rule).</summary>
        Tiktoken,
        /// <summary>CodeGenTokenizer from vocab.json + merges.txt: what a user holding GPT-2's files would try first.</summary>
        CodeGen,
    }

    /// <summary>
    /// GPT-2's pre-tokenizer regex (the one a ByteLevel pre-tokenizer with use_regex applies). The package's own
    /// GPT-2 pattern is only reachable through its data packages, so it is written out here.
    /// </summary>
    const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>
    /// Builds one kind from a tokenizer.json holding a byte-level BPE with no normalizer (GPT-2's, our trainer's).
    /// Anything else is refused rather than approximated, so a comparison never runs on a mistranslated tokenizer.
    /// </summary>
    public static Tokenizer Create(string tokenizerJsonPath, Kind kind)
    {
        var root = JsonNode.Parse(File.ReadAllText(tokenizerJsonPath))
            ?? throw new NotSupportedException($"{tokenizerJsonPath}: empty");
        var model = root["model"] ?? throw new NotSupportedException($"{tokenizerJsonPath}: no model");
        var pre = root["pre_tokenizer"];
        if ((string?)model["type"] != "BPE" || root["normalizer"] is not null || (string?)pre?["type"] != "ByteLevel"
            || (bool?)pre["add_prefix_space"] == true || (bool?)pre["use_regex"] == false)
            throw new NotSupportedException($"{tokenizerJsonPath}: only a byte-level BPE without a normalizer is translated");

        var vocab = model["vocab"]!.AsObject().Select(kv => KeyValuePair.Create(kv.Key, (int)kv.Value!)).ToList();
        // Merges are "a b" strings (older files) or ["a", "b"] pairs (newer ones).
        var merges = model["merges"]!.AsArray()
            .Select(m => m is JsonArray pair ? $"{(string)pair[0]!} {(string)pair[1]!}" : (string)m!).ToList();
        var special = (root["added_tokens"]?.AsArray() ?? [])
            .Where(t => (bool?)t!["special"] == true)
            .ToDictionary(t => (string)t!["content"]!, t => (int)t!["id"]!);
        var preTokenizer = new RegexPreTokenizer(new Regex(Gpt2Pattern, RegexOptions.Compiled), special);

        switch (kind)
        {
            case Kind.Bpe:
                return BpeTokenizer.Create(new BpeOptions(vocab)
                {
                    Merges = merges, ByteLevel = true, PreTokenizer = preTokenizer, SpecialTokens = special,
                });
            case Kind.Tiktoken:
                return TiktokenTokenizer.Create(TiktokenRanks(vocab, special), preTokenizer, normalizer: null, special);
            case Kind.CodeGen:
                var vocabJson = new JsonObject();
                foreach (var (token, id) in vocab) vocabJson[token] = id;
                var mergesTxt = "#version: 0.2\n" + string.Join('\n', merges) + "\n";
                return CodeGenTokenizer.Create(new MemoryStream(Encoding.UTF8.GetBytes(vocabJson.ToJsonString())),
                    new MemoryStream(Encoding.UTF8.GetBytes(mergesTxt)));
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    /// <summary>Ids for text with no special tokens added around it, pre-tokenized and normalized as configured.</summary>
    public static IReadOnlyList<int> Encode(Tokenizer tokenizer, string text) => tokenizer is CodeGenTokenizer codeGen
        ? codeGen.EncodeToIds(text, addPrefixSpace: false, addBeginningOfSentence: false, addEndOfSentence: false)
        : tokenizer.EncodeToIds(text);

    /// <summary>
    /// A .tiktoken file in memory ("base64(bytes) rank" per line): each vocabulary entry's bytes (the byte-level
    /// alphabet undone) ranked by its id; special tokens are not ranks and go to the tokenizer separately.
    /// </summary>
    static MemoryStream TiktokenRanks(List<KeyValuePair<string, int>> vocab, Dictionary<string, int> special)
    {
        var byteOf = ByteLevelAlphabet();
        var text = new StringBuilder();
        foreach (var (token, id) in vocab)
        {
            if (special.ContainsKey(token)) continue;
            var bytes = token.Select(c => byteOf.TryGetValue(c, out var b) ? b
                : throw new NotSupportedException($"vocabulary entry {token} is not in the byte-level alphabet")).ToArray();
            text.Append(Convert.ToBase64String(bytes)).Append(' ').Append(id).Append('\n');
        }
        return new MemoryStream(Encoding.UTF8.GetBytes(text.ToString()));
    }

    /// <summary>GPT-2's byte-to-character map, inverted: printable bytes stand for themselves, the rest from U+0100.</summary>
    static Dictionary<char, byte> ByteLevelAlphabet()
    {
        var map = new Dictionary<char, byte>();
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[(char)(printable ? b : next++)] = (byte)b;
        }
        return map;
    }
}
