// Policy: (B, T+1) token windows from a TokenStream. Random mode draws window starts from a generator seeded by
// (seed, cursor) alone, so any batch can be reproduced or resumed from a saved Cursor. Sequential mode walks
// consecutive windows that overlap by one token, so every token after the first is a target exactly once; the
// trailing remainder that does not fill a window is dropped.
namespace Whittle.Native.Data;

public sealed class BatchLoader
{
    readonly TokenStream _stream;
    readonly ulong _seed;

    BatchLoader(TokenStream stream, int batchSize, int contextLength, ulong seed, bool sequential)
    {
        if (batchSize < 1 || contextLength < 1)
            throw new WhittleException($"batch size ({batchSize}) and context length ({contextLength}) must be positive");
        if (stream.Length < contextLength + 1)
            throw new WhittleException($"split has {stream.Length} tokens, fewer than one window of context length {contextLength} + 1");
        _stream = stream;
        _seed = seed;
        BatchSize = batchSize;
        ContextLength = contextLength;
        IsSequential = sequential;
        WindowCount = sequential ? (stream.Length - 1) / contextLength : long.MaxValue;
    }

    public static BatchLoader Random(TokenStream stream, int batchSize, int contextLength, ulong seed) =>
        new(stream, batchSize, contextLength, seed, false);
    public static BatchLoader Sequential(TokenStream stream, int batchSize, int contextLength) =>
        new(stream, batchSize, contextLength, 0, true);

    public int BatchSize { get; }
    public int ContextLength { get; }
    public bool IsSequential { get; }
    /// <summary>Sequential mode: windows in one pass over the split.</summary>
    public long WindowCount { get; }
    /// <summary>Batches handed out so far; set it to resume.</summary>
    public long Cursor { get; set; }

    /// <summary>The next batch as (rows, T+1) row-major; rows = B except for the last sequential batch. False when a sequential pass is
    /// done.</summary>
    public bool TryNext(out int[] batch)
    {
        int w = ContextLength + 1;
        if (IsSequential)
        {
            long first = Cursor * BatchSize;
            if (first >= WindowCount) { batch = []; return false; }
            int rows = (int)Math.Min(BatchSize, WindowCount - first);
            batch = new int[rows * w];
            for (int r = 0; r < rows; r++) _stream.Read((first + r) * ContextLength, batch.AsSpan(r * w, w));
        }
        else
        {
            batch = new int[BatchSize * w];
            ulong state = Mix(_seed ^ Mix((ulong)Cursor + 0x9E3779B97F4A7C15UL));
            ulong starts = (ulong)(_stream.Length - w) + 1;
            for (int r = 0; r < BatchSize; r++)
            {
                state += 0x9E3779B97F4A7C15UL;
                long start = (long)Math.BigMul(Mix(state), starts, out _);   // high half of a 64x64 product: bias below 2^-64 * starts
                _stream.Read(start, batch.AsSpan(r * w, w));
            }
        }
        Cursor++;
        return true;
    }

    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
