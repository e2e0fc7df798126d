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
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e) { throw new InvalidFileException(path, $"not valid JSON ({e.Message})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object)
                return FromTokenizerJson(path, bytes, root);
            if (root.ValueKind == JsonValueKind.Object)
                return FromVocabAndMerges(path, bytes, root);
            throw new InvalidFileException(path, "expected a JSON object (tokenizer.json or a GPT-2 encoder.json)");
        }
    }

    static string Hash(params byte[][] parts)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var p in parts) sha.AppendData(p);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    static Dictionary<string, int> ReadVocab(string path, JsonElement obj)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in obj.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                throw new InvalidFileException(path, $"vocabulary entry '{p.Name}' is not a non-negative integer id");
            vocab[p.Name] = id;
        }
        return vocab;
    }

    static Tokenizer FromVocabAndMerges(string path, byte[] vocabBytes, JsonElement root)
    {
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        string? mergesPath = new[] { "vocab.bpe", "merges.txt" }.Select(n => System.IO.Path.Combine(dir, n)).FirstOrDefault(File.Exists);
        if (mergesPath is null) throw new WhittleException($"{path}: GPT-2 style vocabulary needs a sibling vocab.bpe or merges.txt, found neither in {dir}");
        var vocab = ReadVocab(path, root);
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

    static Tokenizer FromTokenizerJson(string path, byte[] bytes, JsonElement root)
    {
        var m = root.GetProperty("model");
        string type = m.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
        if (type != "BPE") throw new InvalidFileException(path, $"model.type is '{type}'; only BPE is supported");
        RequireNullOrEmpty(path, m, "unk_token", "continuing_subword_prefix", "end_of_word_suffix");
        if (m.TryGetProperty("dropout", out var d) && d.ValueKind == JsonValueKind.Number && d.GetDouble() != 0)
            throw new InvalidFileException(path, "model.dropout is set; BPE dropout is not supported");
        if (m.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True)
            throw new InvalidFileException(path, "model.byte_fallback is true; only byte-level BPE is supported");
        bool ignoreMerges = m.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;
        if (!m.TryGetProperty("vocab", out var v) || v.ValueKind != JsonValueKind.Object)
            throw new InvalidFileException(path, "model.vocab is missing or not an object");
        var vocab = ReadVocab(path, v);
        var merges = new List<(string, string)>();
        if (m.TryGetProperty("merges", out var ms) && ms.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var e in ms.EnumerateArray())
            {
                if (e.ValueKind == JsonValueKind.String)
                {
                    var parts = e.GetString()!.Split(' ');
                    if (parts.Length != 2) throw new InvalidFileException(path, $"model.merges[{i}] is not two tokens separated by one space");
                    merges.Add((parts[0], parts[1]));
                }
                else if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 2)
                    merges.Add((e[0].GetString()!, e[1].GetString()!));
                else throw new InvalidFileException(path, $"model.merges[{i}] is neither \"a b\" nor [\"a\", \"b\"]");
                i++;
            }
        }

        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in at.EnumerateArray())
            {
                int id = a.GetProperty("id").GetInt32();
                string content = a.GetProperty("content").GetString()!;
                foreach (var flag in new[] { "single_word", "lstrip", "rstrip" })
                    if (a.TryGetProperty(flag, out var f) && f.ValueKind == JsonValueKind.True)
                        throw new InvalidFileException(path, $"added token '{content}' sets {flag}; not supported");
                bool special = a.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True;
                added.Add(new AddedToken(id, content, special));
            }
        }

        var normalizer = ReadNormalizer(path, root.TryGetProperty("normalizer", out var n) ? n : default);
        var steps = new List<PreTokenizerStep>();
        bool prefixSpace = false;
        if (root.TryGetProperty("pre_tokenizer", out var pt) && pt.ValueKind == JsonValueKind.Object)
            ReadPreTokenizer(path, pt, steps, ref prefixSpace, topLevel: true);
        if (root.TryGetProperty("decoder", out var dec) && dec.ValueKind == JsonValueKind.Object)
        {
            string dt = dec.GetProperty("type").GetString()!;
            if (dt != "ByteLevel") throw new InvalidFileException(path, $"decoder.type is '{dt}'; only ByteLevel is supported");
        }
        var model = new BpeModel(vocab, merges, ignoreMerges, path);
        return new Tokenizer(path, Hash(bytes), model, vocab, added, normalizer, steps.ToArray(), prefixSpace);
    }

    static void RequireNullOrEmpty(string path, JsonElement obj, params string[] names)
    {
        foreach (var name in names)
            if (obj.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.String && e.GetString()!.Length > 0)
                throw new InvalidFileException(path, $"model.{name} is '{e.GetString()}'; byte-level BPE does not use it");
    }

    static INormalizer? ReadNormalizer(string path, JsonElement n)
    {
        if (n.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
        string type = n.GetProperty("type").GetString()!;
        switch (type)
        {
            case "NFC": return new NfcNormalizer();
            case "Sequence":
                var parts = n.GetProperty("normalizers").EnumerateArray().Select(e => ReadNormalizer(path, e)).OfType<INormalizer>().ToArray();
                return parts.Length == 0 ? null : parts.Length == 1 ? parts[0] : new SequenceNormalizer(parts);
            default: throw new InvalidFileException(path, $"normalizer '{type}' is not supported (only NFC and Sequence)");
        }
    }

    static void ReadPreTokenizer(string path, JsonElement p, List<PreTokenizerStep> steps, ref bool prefixSpace, bool topLevel)
    {
        string type = p.GetProperty("type").GetString()!;
        switch (type)
        {
            case "ByteLevel":
                bool useRegex = !p.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False;
                if (p.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                {
                    // Hugging Face prefixes each split it sees; that equals prefixing the segment only when nothing split before.
                    if (steps.Count > 0) throw new InvalidFileException(path, "pre_tokenizer: ByteLevel add_prefix_space after another step is not supported");
                    prefixSpace = true;
                }
                steps.Add(new ByteLevelStep(useRegex));
                break;
            case "Split":
                var pat = p.GetProperty("pattern");
                // A tokenizer file is input like any other: its pattern could backtrack for ever on some text, so every
                // match runs under SplitStep.MatchTimeout and a timeout is an error naming the file (SplitStep.Apply).
                Regex regex;
                try
                {
                    regex = pat.TryGetProperty("Regex", out var re)
                        ? new Regex(re.GetString()!, RegexOptions.CultureInvariant | RegexOptions.Compiled, SplitStep.MatchTimeout)
                        : new Regex(Regex.Escape(pat.GetProperty("String").GetString()!), RegexOptions.CultureInvariant, SplitStep.MatchTimeout);
                }
                catch (ArgumentException e) { throw new InvalidFileException(path, $"pre_tokenizer: Split pattern is not a valid regular expression ({ErrorText.Clip(e.Message)})"); }
                if (p.TryGetProperty("invert", out var inv) && inv.ValueKind == JsonValueKind.True)
                    throw new InvalidFileException(path, "pre_tokenizer: Split with invert=true is not supported");
                string behavior = p.GetProperty("behavior").GetString()!;
                if (!Enum.TryParse<SplitStep.Behavior>(behavior, out var b))
                    throw new InvalidFileException(path, $"pre_tokenizer: Split behavior '{behavior}' is not supported");
                steps.Add(new SplitStep(regex, b, path));
                break;
            case "Sequence":
                foreach (var e in p.GetProperty("pretokenizers").EnumerateArray()) ReadPreTokenizer(path, e, steps, ref prefixSpace, false);
                break;
            default:
                throw new InvalidFileException(path, $"pre_tokenizer '{type}' is not supported (ByteLevel, Split, Sequence)");
        }
    }
}
