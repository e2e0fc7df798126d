using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Whittle.Native.Tensors;

namespace Whittle.Native.Distillation;

/// <summary>
/// A teacher-logit cache: one file per training batch, <c>batch-NNNNNNNN.kd</c> in a directory, holding the top-k teacher
/// summary <see cref="DistillTeacher.TopK"/> needs, so distillation can run without the teacher in memory.
/// Policy:
///  - file layout, little-endian: magic "WKDC", version (i32), rows N (i32), k (i32), vocab V (i32), temperature τ (f32),
///    SHA-256 (32 bytes) of the batch's token ids as i32, then log-probs (N, k) f16, ids (N, k) i32, tail mass (N) f32;
///  - reading refuses a batch whose token hash differs from the batch being trained on (the data or its order changed),
///    and a file whose k, vocabulary or temperature differ from what the reader expects, naming the file and both values;
///  - files are written atomically (nothing half-written on disk), and the length is checked against the header.
/// Log-probabilities are stored as f16 (relative error 2^-11, which for a log-probability of -10 is about 0.005 nats);
/// the tail mass stays f32 because it is often tiny and is not recoverable from the rounded top values.
/// </summary>
public static class TeacherCache
{
    const uint Magic = 0x4344_4B57;   // "WKDC" little-endian
    const int Version = 1, HeaderBytes = 4 + 4 * 4 + 4 + 32;

    public static string BatchPath(string dir, long batch) => Path.Combine(dir, $"batch-{batch:D8}.kd");

    /// <summary>The ids a training micro-batch is keyed by: its inputs (B, T) then its targets (B·T), row-major.</summary>
    public static int[] BatchTokens(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets) => [.. inputs, .. targets];

    public static string HashTokens(ReadOnlySpan<int> tokenIds) =>
        Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(tokenIds)));

    /// <summary>Writes one batch: its token ids (any layout the reader will present the same way) and the top-k summary (CPU
    /// tensors).</summary>
    public static void Write(
        string dir, long batch, ReadOnlySpan<int> tokenIds, Tensor logProbs, Tensor ids, Tensor tail, float temperature, int vocab)
    {
        int n = logProbs.Size(0), k = logProbs.Size(1);
        ArgCheck.Shape(ids, nameof(ids), n, k); ArgCheck.Shape(tail, nameof(tail), n);
        var lp = logProbs.ToFloatArray(); var id = ids.ToIntArray(); var tl = tail.ToFloatArray();
        var buf = new byte[HeaderBytes + (long)n * k * 2 + (long)n * k * 4 + n * 4L];
        var span = buf.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(span[4..], Version);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], n);
        BinaryPrimitives.WriteInt32LittleEndian(span[12..], k);
        BinaryPrimitives.WriteInt32LittleEndian(span[16..], vocab);
        BinaryPrimitives.WriteSingleLittleEndian(span[20..], temperature);
        SHA256.HashData(MemoryMarshal.AsBytes(tokenIds), span.Slice(24, 32));
        int o = HeaderBytes;
        for (int i = 0; i < lp.Length; i++, o += 2) BinaryPrimitives.WriteHalfLittleEndian(span[o..], (Half)lp[i]);
        for (int i = 0; i < id.Length; i++, o += 4) BinaryPrimitives.WriteInt32LittleEndian(span[o..], id[i]);
        for (int i = 0; i < tl.Length; i++, o += 4) BinaryPrimitives.WriteSingleLittleEndian(span[o..], tl[i]);
        Directory.CreateDirectory(dir);
        AtomicFile.Write(BatchPath(dir, batch), s => s.Write(buf));
    }

    /// <summary>Reads one batch as CPU tensors (log-probs (N, k) f32, ids (N, k) i32, tail (N) f32), refusing any mismatch.</summary>
    public static (Tensor LogProbs, Tensor Ids, Tensor Tail) Read(
        string dir, long batch, ReadOnlySpan<int> tokenIds, float temperature, int vocab)
    {
        var path = BatchPath(dir, batch);
        if (!File.Exists(path))
            throw new WhittleException($"{path}: the teacher cache has no batch {batch} (build it with `whittle cache-teacher` over at " +
            $"least that many batches)");
        InputFile.RequireRegular(path);
        var buf = File.ReadAllBytes(path);
        var span = buf.AsSpan();
        if (buf.Length < HeaderBytes || BinaryPrimitives.ReadUInt32LittleEndian(span) != Magic)
            throw new InvalidFileException(path, "not a whittle teacher-cache batch");
        int version = BinaryPrimitives.ReadInt32LittleEndian(span[4..]);
        if (version != Version)
            throw new InvalidFileException(path, $"teacher-cache version {version}; this build reads version {Version}");
        int n = BinaryPrimitives.ReadInt32LittleEndian(span[8..]), k = BinaryPrimitives.ReadInt32LittleEndian(span[12..]);
        int v = BinaryPrimitives.ReadInt32LittleEndian(span[16..]);
        float tau = BinaryPrimitives.ReadSingleLittleEndian(span[20..]);
        if (n < 0 || k < 1 || k > v) throw new InvalidFileException(path, $"bad header (rows {n}, k {k}, vocabulary {v})");
        long expected = HeaderBytes + (long)n * k * 2 + (long)n * k * 4 + n * 4L;
        if (buf.Length != expected)
            throw new InvalidFileException(path, $"{buf.Length} bytes, expected {expected} for {n} rows of top-{k}");
        if (v != vocab) throw new InvalidFileException(path, $"cached for a vocabulary of {v}, but the student has {vocab}");
        if (tau != temperature)
            throw new InvalidFileException(path, $"cached at temperature {tau}, but distillation runs at {temperature}");
        var want = SHA256.HashData(MemoryMarshal.AsBytes(tokenIds));
        if (!span.Slice(24, 32).SequenceEqual(want))
            throw new InvalidFileException(
                path, $"batch {batch} was cached for tokens with sha256 {Convert.ToHexStringLower(span.Slice(24, 32))[..12]}… but this " +
                $"batch's tokens hash to {Convert.ToHexStringLower(want)[..12]}…; the data, seed or batch order changed: rebuild the " +
                $"cache");
        var lp = new float[n * k]; var id = new int[n * k]; var tl = new float[n];
        int o = HeaderBytes;
        for (int i = 0; i < lp.Length; i++, o += 2) lp[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(span[o..]);
        for (int i = 0; i < id.Length; i++, o += 4) id[i] = BinaryPrimitives.ReadInt32LittleEndian(span[o..]);
        for (int i = 0; i < tl.Length; i++, o += 4) tl[i] = BinaryPrimitives.ReadSingleLittleEndian(span[o..]);
        return (Tensor.FromArray(lp, n, k), Tensor.FromArray(id, n, k), Tensor.FromArray(tl, n));
    }
}
