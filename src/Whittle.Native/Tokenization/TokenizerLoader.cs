// Policy: reads the two on-disk forms of a byte-level BPE tokenizer — Hugging Face tokenizer.json and the GPT-2 pair
// encoder.json (vocab.json) + vocab.bpe (merges.txt) — and refuses, naming the field, every option whose Hugging Face
// behaviour this implementation does not reproduce. A tokenizer that loads encodes exactly like Hugging Face.
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Whittle.Native.Tokenization;

internal static class TokenizerLoader
{
    public static Tokenizer Load(string path)
    {
        if (Directory.Exists(path))
        {
            var tj = System.IO.Path.Combine(path, "tokenizer.json");
            if (File.Exists(tj)) return Load(tj);
            foreach (var v in new[] { "vocab.json", "encoder.json" })
                if (File.Exists(System.IO.Path.Combine(path, v))) return Load(System.IO.Path.Combine(path, v));
            throw new WhittleException($"{path}: directory holds neither tokenizer.json nor vocab.json/encoder.json");
        }
        if (!File.Exists(path)) throw new WhittleException($"{path}: tokenizer file not found");
        InputFile.RequireRegular(path);
        var bytes = File.ReadAllBytes(path);
        var root = JsonField.Parse(path, bytes, maxDepth: 256);
        if (root.Kind != JsonValueKind.Object)
            throw new InvalidFileException(path, "expected a JSON object (tokenizer.json or a GPT-2 encoder.json)");
        if (root["model"].Kind == JsonValueKind.Object) return FromTokenizerJson(path, bytes, root);
        return FromVocabAndMerges(path, bytes, root);
    }

    static string Hash(params byte[][] parts)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var p in parts) sha.AppendData(p);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>
    /// The largest token id accepted. The id tables are sized by the largest id, so an id of 2,000,000,000 in a
    /// hostile file would allocate gigabytes; the largest real vocabularies are a few hundred thousand.
    /// </summary>
    internal const int MaxTokenId = (1 << 24) - 1;

    static Dictionary<string, int> ReadVocab(JsonField obj)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (name, value) in obj.Properties()) vocab[name] = value.Int(0, MaxTokenId);
        return vocab;
    }

    static Tokenizer FromVocabAndMerges(string path, byte[] vocabBytes, JsonField root)
    {
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        string? mergesPath = new[] { "vocab.bpe", "merges.txt" }.Select(n => System.IO.Path.Combine(dir, n)).FirstOrDefault(File.Exists);
        if (mergesPath is null)
            throw new WhittleException($"{path}: GPT-2 style vocabulary needs a sibling vocab.bpe or merges.txt, found neither in {dir}");
        var vocab = ReadVocab(root);
        InputFile.RequireRegular(mergesPath);
        var mergesBytes = File.ReadAllBytes(mergesPath);
        var merges = new List<(string, string)>();
        int lineNo = 0;
        foreach (var raw in System.Text.Encoding.UTF8.GetString(mergesBytes).Split('\n'))
        {
            lineNo++;
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || (lineNo == 1 && line.StartsWith("#version"))) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2) throw new InvalidFileException(mergesPath, $"line {lineNo}: expected two tokens separated by one space");
            merges.Add((parts[0], parts[1]));
        }
        var added = new List<AddedToken>();
        if (vocab.TryGetValue("<|endoftext|>", out int eos)) added.Add(new AddedToken(eos, "<|endoftext|>", true));
        var model = new BpeModel(vocab, merges, ignoreMerges: false, mergesPath);
        return new Tokenizer(path, Hash(vocabBytes, mergesBytes), model, vocab, added, null, [new ByteLevelStep(true)], false);
    }

    static Tokenizer FromTokenizerJson(string path, byte[] bytes, JsonField root)
    {
        var m = root["model"];
        string type = m["type"].StringOrNull() ?? "BPE";
        if (type != "BPE") throw new InvalidFileException(path, $"model.type is '{JsonField.Truncate(type)}'; only BPE is supported");
        RequireNullOrEmpty(path, m, "unk_token", "continuing_subword_prefix", "end_of_word_suffix");
        if (m["dropout"].DoubleOr(0) != 0)
            throw new InvalidFileException(path, "model.dropout is set; BPE dropout is not supported");
        if (m["byte_fallback"].BoolOr(false))
            throw new InvalidFileException(path, "model.byte_fallback is true; only byte-level BPE is supported");
        bool ignoreMerges = m["ignore_merges"].BoolOr(false);
        var vocab = ReadVocab(m["vocab"].RequireObject());
        var merges = new List<(string, string)>();
        foreach (var e in m["merges"].ItemsOrEmpty())
        {
            if (e.Kind == JsonValueKind.String)
            {
                var parts = e.String().Split(' ');
                if (parts.Length != 2) throw e.Error("is not two tokens separated by one space");
                merges.Add((parts[0], parts[1]));
            }
            else if (e.Kind == JsonValueKind.Array && e.Items() is { Count: 2 } pair)
                merges.Add((pair[0].String(), pair[1].String()));
            else throw e.Error("is neither \"a b\" nor [\"a\", \"b\"]");
        }

        var added = new List<AddedToken>();
        foreach (var a in root["added_tokens"].ItemsOrEmpty())
        {
            a.RequireObject();
            int id = a["id"].Int(0, MaxTokenId);
            string content = a["content"].String();
            foreach (var flag in new[] { "single_word", "lstrip", "rstrip" })
                if (a[flag].BoolOr(false))
                    throw new InvalidFileException(path, $"added token '{JsonField.Truncate(content)}' sets {flag}; not supported");
            added.Add(new AddedToken(id, content, a["special"].BoolOr(false)));
        }

        var normalizer = ReadNormalizer(path, root["normalizer"]);
        var steps = new List<PreTokenizerStep>();
        bool prefixSpace = false;
        if (!root["pre_tokenizer"].IsAbsent)
            ReadPreTokenizer(path, root["pre_tokenizer"], steps, ref prefixSpace, topLevel: true);
        if (!root["decoder"].IsAbsent)
        {
            string dt = root["decoder"]["type"].String();
            if (dt != "ByteLevel")
                throw new InvalidFileException(path, $"decoder.type is '{JsonField.Truncate(dt)}'; only ByteLevel is supported");
        }
        var model = new BpeModel(vocab, merges, ignoreMerges, path);
        return new Tokenizer(path, Hash(bytes), model, vocab, added, normalizer, steps.ToArray(), prefixSpace);
    }

    static void RequireNullOrEmpty(string path, JsonField obj, params string[] names)
    {
        foreach (var name in names)
            if (obj[name].StringOrNull() is { Length: > 0 } value)
                throw new InvalidFileException(path, $"model.{name} is '{JsonField.Truncate(value)}'; byte-level BPE does not use it");
    }

    static INormalizer? ReadNormalizer(string path, JsonField n)
    {
        if (n.IsAbsent) return null;
        string type = n["type"].String();
        switch (type)
        {
            case "NFC": return new NfcNormalizer();
            case "Sequence":
                var parts = n["normalizers"].Items().Select(e => ReadNormalizer(path, e)).OfType<INormalizer>().ToArray();
                return parts.Length == 0 ? null : parts.Length == 1 ? parts[0] : new SequenceNormalizer(parts);
            default: throw new InvalidFileException(
                path, $"normalizer '{JsonField.Truncate(type)}' is not supported (only NFC and Sequence)");
        }
    }

    static void ReadPreTokenizer(string path, JsonField p, List<PreTokenizerStep> steps, ref bool prefixSpace, bool topLevel)
    {
        string type = p["type"].String();
        switch (type)
        {
            case "ByteLevel":
                bool useRegex = p["use_regex"].BoolOr(true);
                if (p["add_prefix_space"].BoolOr(false))
                {
                    // Hugging Face prefixes each split it sees; that equals prefixing the segment only when nothing split before.
                    if (steps.Count > 0)
                        throw new InvalidFileException(
                        path, "pre_tokenizer: ByteLevel add_prefix_space after another step is not supported");
                    prefixSpace = true;
                }
                steps.Add(new ByteLevelStep(useRegex));
                break;
            case "Split":
                var pat = p["pattern"];
                // A tokenizer file is input like any other: its pattern could backtrack for ever on some text, so every
                // match runs under SplitStep.MatchTimeout and a timeout is an error naming the file (SplitStep.Apply).
                Regex regex = pat.Has("Regex") ? SplitRegex(pat["Regex"])
                    : new Regex(Regex.Escape(pat["String"].String()), RegexOptions.CultureInvariant, SplitStep.MatchTimeout);
                if (p["invert"].BoolOr(false))
                    throw new InvalidFileException(path, "pre_tokenizer: Split with invert=true is not supported");
                string behavior = p["behavior"].String();
                // By exact name: Enum.TryParse would also take "1" or "Isolated, Removed", which Hugging Face refuses.
                if (!Enum.GetNames<SplitStep.Behavior>().Contains(behavior) || !Enum.TryParse<SplitStep.Behavior>(behavior, out var b))
                    throw new InvalidFileException(
                        path, $"pre_tokenizer: Split behavior '{JsonField.Truncate(behavior)}' is not supported");
                steps.Add(new SplitStep(regex, b, path));
                break;
            case "Sequence":
                foreach (var e in p["pretokenizers"].Items()) ReadPreTokenizer(path, e, steps, ref prefixSpace, false);
                break;
            default:
                throw new InvalidFileException(
                    path, $"pre_tokenizer '{JsonField.Truncate(type)}' is not supported (ByteLevel, Split, Sequence)");
        }
    }

    /// <summary>A Split pattern is an untrusted regex: one .NET cannot compile is an error naming the field.</summary>
    static Regex SplitRegex(JsonField f)
    {
        try { return new Regex(f.String(), RegexOptions.CultureInvariant | RegexOptions.Compiled, SplitStep.MatchTimeout); }
        catch (ArgumentException e) { throw f.Error($"is not a valid regular expression: {JsonField.Truncate(e.Message)}"); }
    }
}
