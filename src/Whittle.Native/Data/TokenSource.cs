namespace Whittle.Native.Data;

/// <summary>A stream of token ids that can be read by range (an in-memory array, a memory-mapped dataset split).</summary>
public interface ITokenSource
{
    long Length { get; }
    void Read(long start, Span<int> destination);
}

/// <summary>Token ids held in memory (a tokenized text).</summary>
public sealed class ArrayTokenSource(int[] tokens) : ITokenSource
{
    public long Length => tokens.Length;
    public void Read(long start, Span<int> destination) => tokens.AsSpan((int)start, destination.Length).CopyTo(destination);
}
