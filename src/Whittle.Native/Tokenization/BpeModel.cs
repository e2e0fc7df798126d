// Policy: byte-level BPE over token ids. Merge ranks live in a hash map keyed by the (left, right) id pair; a word is
// merged lowest-rank-first, leftmost first on ties, exactly as Hugging Face tokenizers does. Results are cached per
// pre-tokenized piece because natural text repeats the same words over and over.
using System.Collections.Concurrent;

namespace Whittle.Native.Tokenization;

internal sealed class BpeModel
{
    readonly Dictionary<long, (int Rank, int NewId)> _merges;
    readonly int[] _byteToId;                       // (256,) id of each single-byte token
    readonly Dictionary<string, int> _vocab;
    readonly bool _ignoreMerges;
    readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    const int CacheLimit = 1 << 20;

    public BpeModel(Dictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges, bool ignoreMerges, string source)
    {
        _vocab = vocab;
        _ignoreMerges = ignoreMerges;
        _byteToId = new int[256];
        for (int b = 0; b < 256; b++)
        {
            if (!vocab.TryGetValue(ByteLevel.ByteToChar[b].ToString(), out int id))
                throw new InvalidFileException(
                    source, $"byte-level BPE vocabulary lacks the token for byte 0x{b:X2} ('{ByteLevel.ByteToChar[b]}')");
            _byteToId[b] = id;
        }
        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (l, r) = merges[rank];
            if (!vocab.TryGetValue(l, out int li) || !vocab.TryGetValue(r, out int ri))
                throw new InvalidFileException(source, $"merge {rank} ('{l} {r}') uses a token missing from the vocabulary");
            if (!vocab.TryGetValue(l + r, out int ni))
                throw new InvalidFileException(
                    source, $"merge {rank} ('{l} {r}') produces '{l + r}', which is missing from the vocabulary");
            _merges.TryAdd(Key(li, ri), (rank, ni));   // a repeated merge keeps its first (lowest) rank
        }
    }

    static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of one pre-tokenized piece (its UTF-8 bytes) to output.</summary>
    public void EncodePiece(ReadOnlySpan<char> piece, ReadOnlySpan<byte> utf8, List<int> output)
    {
        if (utf8.Length == 1) { output.Add(_byteToId[utf8[0]]); return; }
        var lookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(piece, out var cached)) { output.AddRange(cached); return; }
        var ids = Merge(utf8);
        if (_cache.Count >= CacheLimit) _cache.Clear();
        lookup.TryAdd(piece, ids);
        output.AddRange(ids);
    }

    int[] Merge(ReadOnlySpan<byte> utf8)
    {
        if (_ignoreMerges && _vocab.TryGetValue(ByteLevel.Encode(utf8), out int whole)) return [whole];
        int n = utf8.Length;
        // Symbols as a doubly linked list over (n,) arrays; a merged-away symbol has id -1.
        var id = new int[n];
        var prev = new int[n];
        var next = new int[n];
        for (int i = 0; i < n; i++) { id[i] = _byteToId[utf8[i]]; prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
        // Candidate merges ordered by (rank, position); stale entries are skipped when popped.
        var heap = new PriorityQueue<int, long>();
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(Key(id[i], id[i + 1]), out var m)) heap.Enqueue(i, ((long)m.Rank << 32) | (uint)i);
        while (heap.TryDequeue(out int pos, out long prio))
        {
            int rank = (int)(prio >> 32);
            int right = next[pos];
            if (id[pos] < 0 || right < 0) continue;
            if (!_merges.TryGetValue(Key(id[pos], id[right]), out var m) || m.Rank != rank) continue;
            id[pos] = m.NewId;
            id[right] = -1;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;
            int p = prev[pos];
            if (p >= 0 && _merges.TryGetValue(Key(id[p], id[pos]), out var mp)) heap.Enqueue(p, ((long)mp.Rank << 32) | (uint)p);
            int q = next[pos];
            if (q >= 0 && _merges.TryGetValue(Key(id[pos], id[q]), out var mq)) heap.Enqueue(pos, ((long)mq.Rank << 32) | (uint)pos);
        }
        int count = 0;
        for (int i = 0; i >= 0; i = next[i]) count++;
        var result = new int[count];
        count = 0;
        for (int i = 0; i >= 0; i = next[i]) result[count++] = id[i];
        return result;
    }
}
