// Policy: a BPE tokenizer (byte-level like GPT-2, Llama 3 and Qwen2, or SentencePiece-style like Llama 2 and
// Mistral) that encodes and decodes exactly as Hugging Face tokenizers does for the configurations it accepts (see
// TokenizerLoader), and refuses the ones it cannot reproduce. Pipeline per text, as Hugging Face's: added tokens with
// normalized=false found in the raw text → each remaining segment normalized → added tokens with normalized=true
// found in it → pre-tokenize → BPE each piece (cached) → with special tokens, the post-processor's template around
// the ids. Decoding runs the tokenizer.json decoder over the tokens of the ids.
using System.Buffers;
using System.Text;

namespace Whittle.Native.Tokenization;

/// <summary>What a loaded tokenizer.json (or GPT-2 vocabulary pair) is made of.</summary>
/// <param name="TemplatePrefix">Ids the post-processor puts before a single sequence's ids (e.g. BOS).</param>
/// <param name="TemplateSuffix">Ids it puts after them.</param>
internal sealed record TokenizerParts(BpeModel Model, Dictionary<string, int> Vocab, IReadOnlyList<AddedToken> Added,
    INormalizer? Normalizer, PreTokenizer PreTokenizer, DecoderStep Decoder, int[] TemplatePrefix, int[] TemplateSuffix);

public sealed class Tokenizer
{
    readonly BpeModel _model;
    readonly INormalizer? _normalizer;
    readonly PreTokenizer _pre;
    readonly AddedVocabulary _added;
    readonly DecoderStep _decoder;
    readonly string?[] _idTokens;          // (VocabSize,) the token string of each id (added tokens' content)
    readonly byte[][]? _idBytes;           // (VocabSize,) with a ByteLevel decoder: the bytes each id decodes to
    readonly bool[] _special;              // (VocabSize,) the id's token is a special added token

    internal Tokenizer(string path, string sha256, TokenizerParts parts)
    {
        Path = path;
        Sha256 = sha256;
        _model = parts.Model;
        _normalizer = parts.Normalizer;
        _pre = parts.PreTokenizer;
        _decoder = parts.Decoder;
        _added = new AddedVocabulary(parts.Added, parts.Normalizer);
        int size = 0;
        foreach (var id in parts.Vocab.Values) size = Math.Max(size, id + 1);
        foreach (var a in parts.Added) size = Math.Max(size, a.Id + 1);
        VocabSize = size;
        _idTokens = new string?[size];
        foreach (var (tok, id) in parts.Vocab) _idTokens[id] = tok;
        foreach (var a in parts.Added) _idTokens[a.Id] = a.Content;
        var specials = parts.Added.Where(a => a.Special).Select(a => a.Content).ToHashSet(StringComparer.Ordinal);
        _special = _idTokens.Select(t => t is not null && specials.Contains(t)).ToArray();
        if (_decoder is ByteLevelDecoder) _idBytes = _idTokens.Select(t => t is null ? [] : ByteLevelDecoder.TokenBytes(t)).ToArray();
        AddedTokens = parts.Added.ToArray();
        EosId = FindEos(parts.Vocab, parts.Added);
        SpecialPrefix = parts.TemplatePrefix;
        SpecialSuffix = parts.TemplateSuffix;
    }

    /// <summary>Loads tokenizer.json, or encoder.json/vocab.json with its sibling vocab.bpe/merges.txt, or a directory holding
    /// either.</summary>
    public static Tokenizer FromFile(string path) => TokenizerLoader.Load(path);

    /// <summary>The file this tokenizer was read from.</summary>
    public string Path { get; }
    /// <summary>sha256 (lower-case hex) of the tokenizer file's bytes (of encoder then merges for the GPT-2 pair): identifies it in
    /// datasets and models.</summary>
    public string Sha256 { get; }
    /// <summary>One more than the largest id.</summary>
    public int VocabSize { get; }
    /// <summary>The end-of-text id (&lt;|endoftext|&gt;, &lt;/s&gt;, &lt;eos&gt; or &lt;|end_of_text|&gt;), if the tokenizer
    /// has one.</summary>
    public int? EosId { get; }
    public IReadOnlyList<AddedToken> AddedTokens { get; }
    /// <summary>Ids encoding with special tokens puts before a text's ids (the post-processor's template; BOS for Llama).</summary>
    public IReadOnlyList<int> SpecialPrefix { get; }
    /// <summary>Ids encoding with special tokens puts after a text's ids.</summary>
    public IReadOnlyList<int> SpecialSuffix { get; }

    /// <summary>
    /// Where a long document may be cut into pieces encoded separately with the same ids as the whole: before a line
    /// that starts with a non-space, and before a single space between two non-spaces. Only byte-level tokenizers
    /// whose pre-tokenizer always splits there say yes; a SentencePiece-style one (one piece per segment, or split
    /// only at spaces) must see its documents whole.
    /// </summary>
    internal (bool LineStarts, bool WordSpaces) SafeCuts { get; init; }

    public string? IdToToken(int id) => (uint)id < (uint)_idTokens.Length ? _idTokens[id] : null;

    static int? FindEos(Dictionary<string, int> vocab, IReadOnlyList<AddedToken> added)
    {
        string[] names = ["<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>"];
        foreach (var n in names)
        {
            var a = added.FirstOrDefault(t => t.Content == n);
            if (a is not null) return a.Id;
        }
        foreach (var n in names) if (vocab.TryGetValue(n, out int id)) return id;
        return null;
    }

    /// <summary>The ids of text; with addSpecialTokens, inside the post-processor's template (as Hugging Face's
    /// encode(text, add_special_tokens=True)).</summary>
    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(SpecialPrefix);
        Encode(text, ids);
        if (addSpecialTokens) ids.AddRange(SpecialSuffix);
        return ids.ToArray();
    }

    /// <summary>Encodes many documents in parallel; result i is the ids of texts[i].</summary>
    public int[][] EncodeBatch(IReadOnlyList<string> texts, bool addSpecialTokens = false)
    {
        var result = new int[texts.Count][];
        Parallel.For(0, texts.Count, i => result[i] = Encode(texts[i], addSpecialTokens));
        return result;
    }

    /// <summary>Appends the ids of text, without special tokens around them.</summary>
    public void Encode(string text, List<int> ids)
    {
        text = WellFormed(text);
        var raw = new List<(int Start, int End, int Id)>();
        var normalized = new List<(int Start, int End, int Id)>();
        List<(int Start, int Length)> pieces = [], scratch = [];
        _added.SplitRaw(text, 0, text.Length, raw);
        foreach (var (start, end, id) in raw)
        {
            if (id >= 0) { ids.Add(id); continue; }
            string s = text;
            int a = start, b = end;
            if (_normalizer is not null)
            {
                s = _normalizer.Normalize(text.Substring(start, end - start));
                (a, b) = (0, s.Length);
            }
            if (!_added.HasNormalized) { EncodeSegment(s, a, b, start == 0, ids, ref pieces, ref scratch); continue; }
            normalized.Clear();
            _added.SplitNormalized(s, a, b, normalized);
            foreach (var (ns, ne, nid) in normalized)
                if (nid >= 0) ids.Add(nid);
                else EncodeSegment(s, ns, ne, start == 0 && ns == a, ids, ref pieces, ref scratch);
        }
    }

    /// <summary>
    /// A .NET string may hold lone surrogates, which have no UTF-8 form; Hugging Face only ever sees them as U+FFFD
    /// (what a JavaScript or Python string becomes on its way into Rust), so they are replaced first.
    /// </summary>
    static string WellFormed(string text)
    {
        if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0) return text;
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { sb.Append(c).Append(text[++i]); }
            else sb.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
        }
        return sb.ToString();
    }

    void EncodeSegment(string text, int start, int end, bool atTextStart, List<int> ids, ref List<(int Start, int Length)> pieces,
        ref List<(int Start, int Length)> scratch)
    {
        if (end <= start) return;   // Hugging Face drops empty splits before they reach the pre-tokenizer
        var s = _pre.Split(text, start, end, atTextStart, ref pieces, ref scratch);
        foreach (var (ps, pl) in pieces) _model.EncodePiece(s.AsSpan(ps, pl), ids);
    }

    /// <summary>The text of ids, through the tokenizer's decoder; special added tokens left out with skipSpecialTokens.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)VocabSize)
                throw new WhittleException($"token id {id} is outside the vocabulary of {Path} (size {VocabSize})");
        if (_idBytes is not null)
        {
            // ByteLevel alone: every token's bytes, concatenated and read as UTF-8 (what its decode_chain does).
            var bytes = new ArrayBufferWriter<byte>(ids.Length * 4 + 16);
            foreach (int id in ids)
                if (!(skipSpecialTokens && _special[id])) bytes.Write(_idBytes[id]);
            return Encoding.UTF8.GetString(bytes.WrittenSpan);
        }
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
            if (_idTokens[id] is { } t && !(skipSpecialTokens && _special[id])) tokens.Add(t);
        return _decoder.DecodeToString(tokens);
    }
}
