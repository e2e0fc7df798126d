// Policy: reads the two on-disk forms of a BPE tokenizer — Hugging Face tokenizer.json and the GPT-2 pair
// encoder.json (vocab.json) + vocab.bpe (merges.txt) — and refuses, naming the field, every option whose Hugging Face
// behaviour this implementation does not reproduce. A tokenizer that loads encodes and decodes exactly like Hugging
// Face; README's tokenizer section lists what is supported and what is refused.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

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
        foreach (var raw in Encoding.UTF8.GetString(mergesBytes).Split('\n'))
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
        var model = new BpeModel(vocab, merges, new BpeOptions(ByteLevel: true), mergesPath);
        var pre = new PreTokenizer([new ByteLevelStep(true)], byteLevel: true, prefixSpace: false, null, PrependScheme.Never);
        return new Tokenizer(path, Hash(vocabBytes, mergesBytes),
            new TokenizerParts(model, vocab, added, null, pre, new ByteLevelDecoder(), [], []))
            { SafeCuts = (LineStarts: false, WordSpaces: true) };   // the GPT-2 regex: see SafeCuts below
    }

    static Tokenizer FromTokenizerJson(string path, byte[] bytes, JsonField root)
    {
        foreach (var f in new[] { "truncation", "padding" })
            if (!root[f].IsAbsent) throw root[f].Error("is set; encoding with truncation or padding is not supported (set it to null)");
        var m = root["model"];
        string type = m["type"].StringOrNull() ?? "BPE";
        if (type != "BPE") throw m["type"].Error($"is '{JsonField.Truncate(type)}'; only BPE is supported");
        foreach (var name in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (m[name].StringOrNull() is { Length: > 0 } value)
                throw m[name].Error($"is '{JsonField.Truncate(value)}'; not supported (Llama, Qwen, GPT-2 and Mistral BPE do not use it)");
        if (m["dropout"].DoubleOr(0) != 0) throw m["dropout"].Error("is set; BPE dropout is not supported");
        var vocab = ReadVocab(m["vocab"].RequireObject());
        var merges = ReadMerges(m["merges"]);
        int? unkId = null;
        if (m["unk_token"].StringOrNull() is { } unk)
            unkId = vocab.TryGetValue(unk, out int u) ? u
                : throw m["unk_token"].Error($"'{JsonField.Truncate(unk)}' is not in model.vocab");

        var normalizer = ReadNormalizer(root["normalizer"]);
        var added = ReadAddedTokens(root["added_tokens"], vocab, normalizer);
        var pre = root["pre_tokenizer"].IsAbsent ? PreTokenizer.None : ReadPreTokenizer(root["pre_tokenizer"]);
        var options = new BpeOptions(pre.ByteLevel, m["ignore_merges"].BoolOr(false), m["byte_fallback"].BoolOr(false), unkId,
            m["fuse_unk"].BoolOr(false));
        var model = new BpeModel(vocab, merges, options, path);
        var decoder = root["decoder"].IsAbsent ? new JoinWithSpacesDecoder() : ReadDecoder(root["decoder"]);
        int vocabSize = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);
        var (prefix, suffix) = ReadPostProcessor(root["post_processor"], vocabSize);
        var parts = new TokenizerParts(model, vocab, added, normalizer, pre, decoder, prefix, suffix);
        return new Tokenizer(path, Hash(bytes), parts) { SafeCuts = SafeCuts(pre, normalizer, added) };
    }

    static List<(string, string)> ReadMerges(JsonField f)
    {
        var merges = new List<(string, string)>();
        foreach (var e in f.ItemsOrEmpty())
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
        return merges;
    }

    /// <summary>
    /// added_tokens, checked against the ids Hugging Face gives them: the vocabulary's id for a token the model has,
    /// else the next id from the vocabulary's size on, in file order (a file that says otherwise is refused, not
    /// silently encoded with other ids).
    /// </summary>
    static List<AddedToken> ReadAddedTokens(JsonField list, Dictionary<string, int> vocab, INormalizer? normalizer)
    {
        var added = new List<AddedToken>();
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        int next = vocab.Count;
        foreach (var a in list.ItemsOrEmpty())
        {
            a.RequireObject();
            int id = a["id"].Int(0, MaxTokenId);
            string content = a["content"].String();
            if (content.Length == 0) throw a["content"].Error("is empty");
            if (content.Length > AddedVocabulary.MaxContentChars)
                throw a["content"].Error($"is {content.Length:N0} characters long; added tokens of at most " +
                    $"{AddedVocabulary.MaxContentChars} are supported");
            if (!seen.TryAdd(content, id)) throw a["content"].Error($"'{JsonField.Truncate(content)}' appears twice in added_tokens");
            int expected = vocab.TryGetValue(content, out int v) ? v : next++;
            if (id != expected)
                throw a["id"].Error($"is {id}, but Hugging Face gives '{JsonField.Truncate(content)}' id {expected} " +
                    $"(model.vocab holds {vocab.Count} tokens)");
            added.Add(new AddedToken(id, content, a["special"].BoolOr(false), a["single_word"].BoolOr(false), a["lstrip"].BoolOr(false),
                a["rstrip"].BoolOr(false), a["normalized"].BoolOr(!a["special"].BoolOr(false))));
        }
        // Hugging Face resumes matching at a match's end even when rstrip swallowed the whitespace after it, so a token
        // that starts with whitespace could match inside it and overlap; we do not reproduce that.
        foreach (bool normalized in new[] { false, true })
        {
            var group = added.Where(t => t.Normalized == normalized).ToList();
            string Pattern(AddedToken t) => normalized && normalizer is not null ? normalizer.Normalize(t.Content) : t.Content;
            if (group.FirstOrDefault(t => t.RStrip) is { } r
                && group.FirstOrDefault(t => Pattern(t) is [var c, ..] && char.IsWhiteSpace(c)) is { } w)
                throw list.Error($"has '{JsonField.Truncate(r.Content)}' with rstrip and '{JsonField.Truncate(w.Content)}' " +
                    "starting with whitespace; this combination is not supported");
        }
        return added;
    }

    static INormalizer? ReadNormalizer(JsonField n)
    {
        if (n.IsAbsent) return null;
        string type = n["type"].String();
        switch (type)
        {
            case "NFC": return new NfcNormalizer();
            case "Prepend": return new PrependNormalizer(n["prepend"].String());
            case "Replace": var (pattern, content) = ReadReplace(n); return new ReplaceNormalizer(pattern, content);
            case "Sequence":
                var parts = n["normalizers"].Items().Select(ReadNormalizer).OfType<INormalizer>().ToArray();
                return parts.Length == 0 ? null : parts.Length == 1 ? parts[0] : new SequenceNormalizer(parts);
            default:
                throw n["type"].Error($"is '{JsonField.Truncate(type)}'; supported normalizers are NFC, Prepend, " +
                    "Replace (String pattern) and Sequence");
        }
    }

    /// <summary>A Replace normalizer's or decoder's literal pattern and content (a Regex pattern is refused).</summary>
    static (string Pattern, string Content) ReadReplace(JsonField n)
    {
        var pat = n["pattern"].RequireObject();
        if (!pat.Has("String")) throw pat.Error("is not {\"String\": ...}; Replace with a Regex pattern is not supported");
        string pattern = pat["String"].String();
        if (pattern.Length == 0) throw pat["String"].Error("is empty");
        return (pattern, n["content"].String());
    }

    /// <summary>
    /// The pre-tokenizer: a Split, Digits, ByteLevel or Metaspace, or a Sequence of them. Metaspace and ByteLevel with
    /// add_prefix_space must come first (they change the segment before anything splits it); ByteLevel must come
    /// last (it hands the model bytes, and any step after it would see the byte table's chars).
    /// </summary>
    internal static PreTokenizer ReadPreTokenizer(JsonField p)
    {
        var parts = new List<JsonField>();
        if (p["type"].String() == "Sequence") foreach (var e in p["pretokenizers"].Items()) { e.RequireObject(); parts.Add(e); }
        else parts.Add(p);
        var steps = new List<PreTokenizerStep>();
        bool byteLevel = false, prefixSpace = false;
        char? metaspace = null;
        var scheme = PrependScheme.Never;
        foreach (var f in parts)
        {
            string type = f["type"].String();
            if (byteLevel) throw f.Error($"follows a ByteLevel pre-tokenizer; ByteLevel must be the last step");
            switch (type)
            {
                case "ByteLevel":
                    byteLevel = true;
                    if (f["add_prefix_space"].BoolOr(false))
                    {
                        if (steps.Count > 0)
                            throw f["add_prefix_space"].Error("is true after another step; supported only on the first step");
                        prefixSpace = true;
                    }
                    steps.Add(new ByteLevelStep(f["use_regex"].BoolOr(true)));
                    break;
                case "Split":
                    steps.Add(ReadSplit(f));
                    break;
                case "Digits":
                    steps.Add(new DigitsStep(f["individual_digits"].BoolOr(false)));
                    break;
                case "Metaspace":
                    if (steps.Count > 0) throw f.Error("is a Metaspace pre-tokenizer after another step; supported only as the first step");
                    (metaspace, scheme) = ReadMetaspace(f);
                    if (f["split"].BoolOr(true)) steps.Add(new MetaspaceSplitStep(metaspace.Value));
                    break;
                default:
                    throw f["type"].Error($"is '{JsonField.Truncate(type)}'; supported pre-tokenizers are ByteLevel, Split, " +
                        "Digits, Metaspace and Sequence");
            }
        }
        return new PreTokenizer(steps.ToArray(), byteLevel, prefixSpace, metaspace, scheme);
    }

    /// <summary>The Split regexes we scan by hand, keyed by their exact tokenizer.json text.</summary>
    static readonly Dictionary<string, KnownSplitRegex> KnownRegexes = new(StringComparer.Ordinal)
    {
        [@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"] = KnownSplitRegex.Gpt2,
        [@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
            = KnownSplitRegex.Llama3,
        [@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
            = KnownSplitRegex.Qwen2,
    };

    /// <summary>Longest literal Split pattern: bounds the work of finding it.</summary>
    const int MaxSplitStringChars = 256;

    static PreTokenizerStep ReadSplit(JsonField f)
    {
        string behaviorName = f["behavior"].String();
        // By exact name: Enum.TryParse would also take "1" or "Isolated, Removed", which Hugging Face refuses.
        if (!Enum.GetNames<SplitBehavior>().Contains(behaviorName) || !Enum.TryParse<SplitBehavior>(behaviorName, out var behavior))
            throw f["behavior"].Error($"is '{JsonField.Truncate(behaviorName)}'; expected Removed, Isolated, " +
                "MergedWithPrevious, MergedWithNext or Contiguous");
        bool invert = f["invert"].BoolOr(false);
        var pat = f["pattern"].RequireObject();
        if (pat.Has("Regex"))
        {
            string regex = pat["Regex"].String();
            if (!KnownRegexes.TryGetValue(regex, out var known))
                throw pat["Regex"].Error($"is '{JsonField.Truncate(regex)}', not a supported Split regex (the GPT-2, Llama 3 and " +
                    "Qwen2 ones are; .NET's regex engine differs from Hugging Face's, so others are refused rather than split " +
                    "differently)");
            return new RegexSplitStep(known, behavior, invert);
        }
        string literal = pat["String"].String();
        if (literal.Length is 0 or > MaxSplitStringChars)
            throw pat["String"].Error($"must be 1 to {MaxSplitStringChars} characters long, got {literal.Length:N0}");
        return new StringSplitStep(literal, behavior, invert);
    }

    /// <summary>Metaspace's replacement (one char) and prepend scheme, with the older add_prefix_space key read as Hugging
    /// Face reads it.</summary>
    static (char Replacement, PrependScheme Scheme) ReadMetaspace(JsonField f)
    {
        string rep = f["replacement"].String();
        if (rep.Length != 1 || char.IsSurrogate(rep[0]))
            throw f["replacement"].Error("must be one character of the Basic Multilingual Plane");
        string schemeName = f["prepend_scheme"].StringOrNull() ?? "always";
        var scheme = schemeName switch
        {
            "always" => PrependScheme.Always,
            "first" => PrependScheme.First,
            "never" => PrependScheme.Never,
            _ => throw f["prepend_scheme"].Error($"is '{JsonField.Truncate(schemeName)}'; expected always, first or never"),
        };
        if (f["add_prefix_space"].Kind == JsonValueKind.False)
        {
            if (scheme != PrependScheme.Never) throw f["add_prefix_space"].Error("is false but prepend_scheme is not never");
            scheme = PrependScheme.Never;
        }
        return (rep[0], scheme);
    }

    static DecoderStep ReadDecoder(JsonField d)
    {
        string type = d["type"].String();
        switch (type)
        {
            case "ByteLevel": return new ByteLevelDecoder();
            case "ByteFallback": return new ByteFallbackDecoder();
            case "Fuse": return new FuseDecoder();
            case "Replace": var (pattern, content) = ReadReplace(d); return new ReplaceDecoder(pattern, content);
            case "Strip":
                string c = d["content"].String();
                if (!Rune.TryGetRuneAt(c, 0, out var rune) || rune.Utf16SequenceLength != c.Length)
                    throw d["content"].Error("must be one character");
                return new StripDecoder(rune, d["start"].Int(0, int.MaxValue), d["stop"].Int(0, int.MaxValue));
            case "Metaspace": var (rep, scheme) = ReadMetaspace(d); return new MetaspaceDecoder(rep, scheme);
            case "Sequence": return new SequenceDecoder(d["decoders"].Items().Select(ReadDecoder).ToArray());
            default:
                throw d["type"].Error($"is '{JsonField.Truncate(type)}'; supported decoders are ByteLevel, ByteFallback, Fuse, " +
                    "Replace (String pattern), Strip, Metaspace and Sequence");
        }
    }

    /// <summary>
    /// The ids a post-processor puts around a single sequence: TemplateProcessing's `single` (special tokens, then
    /// $A, then special tokens), alone or in a Sequence beside ByteLevel (which only moves offsets). The pair template
    /// is checked but never used: whittle encodes single texts only.
    /// </summary>
    static (int[] Prefix, int[] Suffix) ReadPostProcessor(JsonField p, int vocabSize)
    {
        if (p.IsAbsent) return ([], []);
        var parts = new List<JsonField>();
        if (p["type"].String() == "Sequence") parts.AddRange(p["processors"].Items());
        else parts.Add(p);
        (int[], int[]) result = ([], []);
        bool template = false;
        foreach (var f in parts)
        {
            string type = f["type"].String();
            if (type == "ByteLevel") continue;
            if (type != "TemplateProcessing")
                throw f["type"].Error($"is '{JsonField.Truncate(type)}'; supported post-processors are TemplateProcessing, " +
                    "ByteLevel and Sequence");
            if (template) throw f.Error("is a second TemplateProcessing; one is supported");
            template = true;
            var specials = new Dictionary<string, int[]>(StringComparer.Ordinal);
            foreach (var (name, value) in f["special_tokens"].Properties())
                specials[name] = value["ids"].Items().Select(i => i.Int(0, vocabSize - 1)).ToArray();
            result = ReadTemplate(f["single"], specials, "A");
            if (!f["pair"].IsAbsent) ReadTemplate(f["pair"], specials, "A", "B");
        }
        return result;
    }

    static (int[] Prefix, int[] Suffix) ReadTemplate(JsonField list, Dictionary<string, int[]> specials, params string[] sequences)
    {
        var prefix = new List<int>();
        var suffix = new List<int>();
        var seen = new List<string>();
        foreach (var piece in list.Items())
        {
            piece.RequireObject();
            if (piece.Has("SpecialToken"))
            {
                string name = piece["SpecialToken"]["id"].String();
                if (!specials.TryGetValue(name, out var ids))
                    throw piece["SpecialToken"]["id"].Error($"'{JsonField.Truncate(name)}' is not in special_tokens");
                (seen.Count == 0 ? prefix : suffix).AddRange(ids);
            }
            else if (piece.Has("Sequence"))
            {
                string id = piece["Sequence"]["id"].String();
                if (!sequences.Contains(id) || seen.Contains(id))
                    throw piece["Sequence"]["id"].Error(
                        $"is '{JsonField.Truncate(id)}'; expected each of {string.Join(", ", sequences.Select(s => "$" + s))} once");
                if (seen.Count > 0 && sequences.Length == 1) throw piece.Error("is a second sequence");
                seen.Add(id);
            }
            else throw piece.Error("is neither {\"SpecialToken\": ...} nor {\"Sequence\": ...}");
        }
        if (seen.Count != sequences.Length) throw list.Error($"must hold {string.Join(" and ", sequences.Select(s => "$" + s))}");
        return (prefix.ToArray(), suffix.ToArray());
    }

    /// <summary>
    /// Where DatasetWriter may cut a long document (Tokenizer.SafeCuts): where the pre-tokenizer splits whatever
    /// surrounds the cut and sees the same pieces on both sides of it. A single space between two non-spaces starts a
    /// piece for the GPT-2, Llama 3 and Qwen2 regexes and for Metaspace; a line start after a newline only for the
    /// Llama 3 and Qwen2 ones (GPT-2's `\s+(?!\S)` hands a text-final "\n\n" out whole, but "\n", "\n" before a
    /// letter). Digits and ByteLevel without its regex never join across either. The normalizer must work character
    /// by character (NFC does at a space or newline) and no added token may span or strip across a cut.
    /// </summary>
    static (bool LineStarts, bool WordSpaces) SafeCuts(PreTokenizer pre, INormalizer? normalizer, IReadOnlyList<AddedToken> added)
    {
        if (normalizer is not null and not NfcNormalizer) return (false, false);
        foreach (var t in added)
            if (t.LStrip || t.RStrip || t.SingleWord || (t.Content.Any(char.IsWhiteSpace) && !t.Content.All(c => c == ' ')))
                return (false, false);
        bool words = false, lines = true;
        foreach (var step in pre.Steps)
        {
            switch (step)
            {
                case ByteLevelStep { UseRegex: false }: case DigitsStep: break;
                case ByteLevelStep: words = true; lines = false; break;
                case MetaspaceSplitStep: words = true; lines = false; break;
                case RegexSplitStep { Isolates: true } r: words = true; lines &= r.Regex != KnownSplitRegex.Gpt2; break;
                default: return (false, false);
            }
        }
        return (lines && words, words);
    }
}
