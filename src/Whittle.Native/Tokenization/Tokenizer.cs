// Policy: a byte-level BPE tokenizer that encodes exactly as Hugging Face tokenizers does for the configurations it
// accepts (see TokenizerLoader), and refuses the ones it cannot reproduce. Pipeline per text: split out added tokens
// (leftmost-longest, on the raw text) → normalize each remaining segment → pre-tokenize → BPE each piece (cached).
// Decoding concatenates each id's bytes and reads them as UTF-8 (invalid sequences become U+FFFD).
using System.Buffers;
using System.Text;

namespace Whittle.Native.Tokenization;

/// <summary>A token the tokenizer matches in raw text before anything else (e.g. &lt;|endoftext|&gt;).</summary>
public sealed record AddedToken(int Id, string Content, bool Special);

public sealed class Tokenizer
{
    readonly BpeModel _model;
    readonly INormalizer? _normalizer;
    readonly PreTokenizerStep[] _preTokenizer;
    readonly bool _addPrefixSpace;
    readonly AddedToken[] _added;          // longest first, so the first match at a position is the longest
    readonly byte[][] _idBytes;            // (VocabSize,) the bytes each id decodes to
    readonly string?[] _idTokens;          // (VocabSize,) vocabulary string of each id

    internal Tokenizer(string path, string sha256, BpeModel model, Dictionary<string, int> vocab, IReadOnlyList<AddedToken> added,
        INormalizer? normalizer, PreTokenizerStep[] preTokenizer, bool addPrefixSpace)
    {
        Path = path;
        Sha256 = sha256;
        _model = model;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _addPrefixSpace = addPrefixSpace;
        _added = added.Where(a => a.Content.Length > 0).OrderByDescending(a => a.Content.Length).ThenBy(a => a.Id).ToArray();
        int size = 0;
        foreach (var id in vocab.Values) size = Math.Max(size, id + 1);
        foreach (var a in added) size = Math.Max(size, a.Id + 1);
        VocabSize = size;
        _idBytes = new byte[size][];
        _idTokens = new string?[size];
        foreach (var (tok, id) in vocab)
        {
            _idTokens[id] = tok;
            _idBytes[id] = ByteLevel.Decode(tok) ?? Encoding.UTF8.GetBytes(tok);
        }
        foreach (var a in added)
        {
            _idTokens[a.Id] = a.Content;
            _idBytes[a.Id] = Encoding.UTF8.GetBytes(a.Content);
        }
        for (int i = 0; i < size; i++) _idBytes[i] ??= [];
        AddedTokens = added.ToArray();
        EosId = FindEos(vocab, added);
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
    /// <summary>The end-of-text id (&lt;|endoftext|&gt;, &lt;/s&gt; or &lt;eos&gt;), if the tokenizer has one.</summary>
    public int? EosId { get; }
    public IReadOnlyList<AddedToken> AddedTokens { get; }

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

    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        Encode(text, ids);
        return ids.ToArray();
    }

    /// <summary>Encodes many documents in parallel; result i is the ids of texts[i].</summary>
    public int[][] EncodeBatch(IReadOnlyList<string> texts)
    {
        var result = new int[texts.Count][];
        Parallel.For(0, texts.Count, i => result[i] = Encode(texts[i]));
        return result;
    }

    public void Encode(string text, List<int> ids)
    {
        int pos = 0;
        Span<int> nextAt = _added.Length <= 64 ? stackalloc int[_added.Length] : new int[_added.Length];
        nextAt.Fill(-2);   // -2: not searched yet; -1: no further occurrence
        var pieces = new List<(int, int)>();
        var scratch = new List<(int, int)>();
        while (pos <= text.Length)
        {
            // Leftmost-longest added token at or after pos.
            int bestAt = -1, best = -1;
            for (int k = 0; k < _added.Length; k++)
            {
                if (nextAt[k] == -2 || (nextAt[k] >= 0 && nextAt[k] < pos))
                    nextAt[k] = text.IndexOf(_added[k].Content, pos, StringComparison.Ordinal);
                int at = nextAt[k];
                if (at >= 0 && (bestAt < 0 || at < bestAt)) { bestAt = at; best = k; }
            }
            int segEnd = best < 0 ? text.Length : bestAt;
            if (segEnd > pos) EncodeSegment(text, pos, segEnd, ids, pieces, scratch);
            if (best < 0) break;
            ids.Add(_added[best].Id);
            pos = bestAt + _added[best].Content.Length;
        }
    }

    void EncodeSegment(string text, int start, int end, List<int> ids, List<(int, int)> pieces, List<(int, int)> scratch)
    {
        string s = text;
        if (_normalizer is not null || _addPrefixSpace)
        {
            s = text.Substring(start, end - start);
            if (_normalizer is not null) s = _normalizer.Normalize(s);
            if (_addPrefixSpace && (s.Length == 0 || s[0] != ' ')) s = " " + s;
            start = 0; end = s.Length;
        }
        pieces.Clear();
        pieces.Add((start, end - start));
        foreach (var step in _preTokenizer)
        {
            scratch.Clear();
            step.Apply(s, pieces, scratch);
            (pieces, scratch) = (scratch, pieces);
        }
        byte[]? rented = null;
        Span<byte> buf = stackalloc byte[256];
        foreach (var (ps, pl) in pieces)
        {
            if (pl == 0) continue;
            var chars = s.AsSpan(ps, pl);
            int max = pl * 3;
            if (max > buf.Length)
            {
                if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
                rented = ArrayPool<byte>.Shared.Rent(max);
                buf = rented;
            }
            int n = Encoding.UTF8.GetBytes(chars, buf);
            _model.EncodePiece(chars, buf[..n], ids);
        }
        if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
    }

    /// <summary>The text of ids; added tokens (special or not) appear as their content.</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new ArrayBufferWriter<byte>(ids.Length * 4 + 16);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_idBytes.Length)
                throw new WhittleException($"token id {id} is outside the vocabulary of {Path} (size {VocabSize})");
            bytes.Write(_idBytes[id]);
        }
        return Encoding.UTF8.GetString(bytes.WrittenSpan);
    }

    /// <summary>The bytes one id stands for (a piece of UTF-8, possibly an incomplete character).</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => (uint)id < (uint)_idBytes.Length ? _idBytes[id]
        : throw new WhittleException($"token id {id} is outside the vocabulary of {Path} (size {VocabSize})");
}
