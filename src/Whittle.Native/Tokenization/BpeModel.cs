// Policy: Hugging Face's BPE model over token ids. A piece starts as one symbol per byte (byte-level models: the
// ByteLevel pre-tokenizer's table maps every byte to a vocabulary char) or per character (SentencePiece-style
// models: a character missing from the vocabulary becomes its <0xNN> byte tokens with byte_fallback, else the unknown
// token, runs of them fused with fuse_unk, else nothing). Symbols are merged lowest-rank-first, leftmost first on
// ties; with ignore_merges a piece that is itself in the vocabulary is one token. Results of short pieces are cached
// because natural text repeats the same words over and over; long ones (a whole SentencePiece segment) are not.
using System.Collections.Concurrent;
using System.Text;

namespace Whittle.Native.Tokenization;

/// <summary>Options of a BPE model that change what it encodes (model.* fields of tokenizer.json).</summary>
/// <param name="ByteLevel">Pieces are byte-level: the model sees their UTF-8 bytes.</param>
/// <param name="UnkId">The id of model.unk_token, if set.</param>
internal sealed record BpeOptions(bool ByteLevel, bool IgnoreMerges = false, bool ByteFallback = false, int? UnkId = null,
    bool FuseUnk = false);

internal sealed class BpeModel
{
    readonly Dictionary<long, (int Rank, int NewId)> _merges;
    readonly int[] _byteToId;                       // (256,) byte-level: id of each byte's char; else id of <0xNN> or -1
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocab;
    readonly BpeOptions _options;
    readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    const int CacheLimit = 1 << 20;
    const int MaxCachedChars = 256;

    public BpeModel(Dictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges, BpeOptions options,
        string source)
    {
        _vocab = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _options = options;
        _byteToId = new int[256];
        for (int b = 0; b < 256; b++)
        {
            if (options.ByteLevel)
            {
                if (!vocab.TryGetValue(ByteLevel.ByteToChar[b].ToString(), out _byteToId[b]))
                    throw new InvalidFileException(source,
                        $"byte-level BPE vocabulary lacks the token for byte 0x{b:X2} ('{ByteLevel.ByteToChar[b]}')");
            }
            else _byteToId[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        }
        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (l, r) = merges[rank];
            if (!vocab.TryGetValue(l, out int li) || !vocab.TryGetValue(r, out int ri))
                throw new InvalidFileException(source, $"merge {rank} ('{l} {r}') uses a token missing from the vocabulary");
            if (!vocab.TryGetValue(l + r, out int ni))
                throw new InvalidFileException(source,
                    $"merge {rank} ('{l} {r}') produces '{l + r}', which is missing from the vocabulary");
            _merges[Key(li, ri)] = (rank, ni);   // a repeated merge keeps its last rank, as Hugging Face's map does
        }
    }

    static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of one pre-tokenized piece to output.</summary>
    public void EncodePiece(ReadOnlySpan<char> piece, List<int> output)
    {
        if (piece.Length == 0) return;
        if (_options.ByteLevel && piece.Length == 1 && piece[0] < 0x80) { output.Add(_byteToId[piece[0]]); return; }
        if (piece.Length > MaxCachedChars) { output.AddRange(Encode(piece)); return; }
        var lookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(piece, out var cached)) { output.AddRange(cached); return; }
        var ids = Encode(piece);
        if (_cache.Count >= CacheLimit) _cache.Clear();
        lookup.TryAdd(piece, ids);
        output.AddRange(ids);
    }

    int[] Encode(ReadOnlySpan<char> piece)
    {
        if (_options.ByteLevel)
        {
            var utf8 = Encoding.UTF8.GetBytes(piece.ToArray());
            if (_options.IgnoreMerges && _vocab.Dictionary.TryGetValue(ByteLevel.Encode(utf8), out int whole)) return [whole];
            var ids = new int[utf8.Length];
            for (int i = 0; i < utf8.Length; i++) ids[i] = _byteToId[utf8[i]];
            return Merge(ids);
        }
        if (_options.IgnoreMerges && _vocab.TryGetValue(piece, out int w)) return [w];
        return Merge(CharSymbols(piece));
    }

    /// <summary>One symbol per character, with byte fallback and unknown tokens as Hugging Face's merge_word adds them.</summary>
    int[] CharSymbols(ReadOnlySpan<char> piece)
    {
        var ids = new List<int>(piece.Length);
        bool unkPending = false;
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < piece.Length;)
        {
            int width = char.IsHighSurrogate(piece[i]) && i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]) ? 2 : 1;
            var ch = piece.Slice(i, width);
            i += width;
            if (_vocab.TryGetValue(ch, out int id))
            {
                if (unkPending) { ids.Add(_options.UnkId!.Value); unkPending = false; }
                ids.Add(id);
                continue;
            }
            if (_options.ByteFallback)
            {
                int n = Encoding.UTF8.GetBytes(ch, utf8);
                bool all = true;
                for (int k = 0; k < n; k++) all &= _byteToId[utf8[k]] >= 0;
                if (all)
                {
                    // A pending unknown token stays pending past these bytes, as in Hugging Face.
                    for (int k = 0; k < n; k++) ids.Add(_byteToId[utf8[k]]);
                    continue;
                }
            }
            if (_options.UnkId is int unk)
            {
                if (unkPending && !_options.FuseUnk) ids.Add(unk);
                unkPending = true;
            }
        }
        if (unkPending) ids.Add(_options.UnkId!.Value);
        return ids.ToArray();
    }

    /// <summary>Applies the merges to a sequence of symbol ids (Hugging Face's Word::merge_all without dropout).</summary>
    int[] Merge(int[] symbols)
    {
        int n = symbols.Length;
        if (n < 2) return symbols;
        // Symbols as a doubly linked list over (n,) arrays; a merged-away symbol has id -1.
        var id = symbols;
        var prev = new int[n];
        var next = new int[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
        // Candidate merges ordered by (rank, position), carrying the id they make; stale entries are skipped when popped.
        var heap = new PriorityQueue<(int Pos, int NewId), long>();
        void Push(int pos, (int Rank, int NewId) m) => heap.Enqueue((pos, m.NewId), ((long)m.Rank << 32) | (uint)pos);
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(Key(id[i], id[i + 1]), out var m)) Push(i, m);
        while (heap.TryDequeue(out var top, out _))
        {
            int pos = top.Pos, right = next[pos];
            if (id[pos] < 0 || right < 0) continue;
            if (!_merges.TryGetValue(Key(id[pos], id[right]), out var m) || m.NewId != top.NewId) continue;
            id[pos] = m.NewId;
            id[right] = -1;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;
            int p = prev[pos];
            if (p >= 0 && _merges.TryGetValue(Key(id[p], id[pos]), out var mp)) Push(p, mp);
            int q = next[pos];
            if (q >= 0 && _merges.TryGetValue(Key(id[pos], id[q]), out var mq)) Push(pos, mq);
        }
        int count = 0;
        for (int i = 0; i >= 0; i = next[i]) count++;
        var result = new int[count];
        count = 0;
        for (int i = 0; i >= 0; i = next[i]) result[count++] = id[i];
        return result;
    }
}
