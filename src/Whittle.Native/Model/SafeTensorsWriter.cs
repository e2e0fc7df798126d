// Writes one .safetensors file. Policy:
//  - Layout as the reference implementation (huggingface/safetensors) writes it: compact JSON header with
//    "__metadata__" first, tensors ordered by element size (largest first, which keeps every tensor aligned to its
//    element size) then by name, data offsets contiguous from 0, header padded with spaces to a multiple of 8 bytes.
//  - Float tensors (any float dtype, any strides, any device that can copy to the host) are stored as F32, or as
//    BF16 (round to nearest even) / F16 when asked; I32 tensors are stored as I32.
//  - Atomic: everything goes to "<path>.tmp-<random>" in the same directory, is flushed to disk, then renamed
//    over <path>. On any failure the temp file is deleted and <path> is left exactly as it was.
//  - Integrity: "__metadata__" carries "whittle_data_sha256", the SHA-256 of the data section (every byte after the
//    header), which SafeTensorsFile verifies on open; files from elsewhere (Hugging Face) have no such key and are read
//    unchecked. The header is written with 64 zeros in its place, the data hashed as it streams out, and the digest
//    written over the zeros (same length, so no offset moves): one pass over the tensors.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

public static class SafeTensorsWriter
{
    /// <summary>The header and byte layout a set of tensors gets; shared with the sharded checkpoint writer.</summary>
    internal sealed record Planned(string Name, Tensor Tensor, DType Stored, long Begin, long End);

    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors,
                             IReadOnlyDictionary<string, string>? metadata = null, DType? storeAs = null)
    {
        if (storeAs is DType.I32)
            throw new ArgumentException("storeAs applies to float tensors: F32, BF16 or F16, not I32", nameof(storeAs));
        AtomicFile.Write(path, stream =>
        {
            // The header needs every shape before any data is written, so the list is taken first.
            var plan = Plan(tensors.ToList(), storeAs ?? DType.F32);
            var withHash = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>(), StringComparer.Ordinal)
            {
                [SafeTensorsFile.DataSha256Key] = HashPlaceholder,
            };
            byte[] header = Header(plan, withHash);
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            stream.Write(len);
            stream.Write(header);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            using (var hashing = new HashingWriter(stream, hash))
                foreach (var p in plan) WriteData(hashing, p);
            var digest = Encoding.ASCII.GetBytes(Convert.ToHexStringLower(hash.GetHashAndReset()));
            stream.Position = 8 + PlaceholderOffset(header);
            stream.Write(digest);
            stream.Seek(0, SeekOrigin.End);
        });
    }

    static readonly string HashPlaceholder = new('0', 64);

    /// <summary>Where the placeholder digest sits in the header: after the key, which Header writes once, escaped as is.</summary>
    static int PlaceholderOffset(byte[] header)
    {
        var marker = Encoding.UTF8.GetBytes($"\"{SafeTensorsFile.DataSha256Key}\":\"{HashPlaceholder}\"");
        int at = header.AsSpan().IndexOf(marker);
        if (at < 0) throw new InvalidOperationException("safetensors header lost its digest placeholder");
        return at + marker.Length - 1 - HashPlaceholder.Length;
    }

    /// <summary>Passes writes through to the file and into the digest.</summary>
    sealed class HashingWriter(Stream inner, IncrementalHash hash) : Stream
    {
        public override void Write(ReadOnlySpan<byte> buffer) { hash.AppendData(buffer); inner.Write(buffer); }
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Flush() => inner.Flush();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    internal static List<Planned> Plan(IReadOnlyList<(string Name, Tensor Tensor)> tensors, DType floatAs)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in tensors)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("a tensor name cannot be empty");
            if (name == SafeTensorsFile.MetadataKey)
                throw new ArgumentException($"'{SafeTensorsFile.MetadataKey}' is reserved for metadata and cannot name a tensor");
            if (!names.Add(name)) throw new ArgumentException($"tensor '{name}' is given twice");
        }
        var ordered = tensors
            .Select(t => (t.Name, t.Tensor, Stored: t.Tensor.DType == DType.I32 ? DType.I32 : floatAs))
            .OrderByDescending(t => t.Stored.SizeOf()).ThenBy(t => t.Name, StringComparer.Ordinal);
        var plan = new List<Planned>();
        long offset = 0;
        foreach (var (name, tensor, stored) in ordered)
        {
            long bytes = tensor.Count * stored.SizeOf();
            plan.Add(new Planned(name, tensor, stored, offset, offset + bytes));
            offset += bytes;
        }
        return plan;
    }

    internal static byte[] Header(IReadOnlyList<Planned> plan, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        // Relaxed escaping writes names as they are (the default encoder would turn '+' into \u002B).
        using (var w = new Utf8JsonWriter(
            ms, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(SafeTensorsFile.MetadataKey);
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            foreach (var p in plan)
            {
                w.WriteStartObject(p.Name);
                w.WriteString("dtype", p.Stored.SafetensorsName());
                w.WriteStartArray("shape");
                foreach (int d in p.Tensor.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(p.Begin);
                w.WriteNumberValue(p.End);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        // Spaces after the JSON are valid JSON whitespace; padding keeps the data section 8-byte aligned.
        int padded = (int)((ms.Length + 7) / 8 * 8);
        while (ms.Length < padded) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    static void WriteData(Stream stream, Planned p)
    {
        var t = p.Tensor;
        if (t.Count == 0) return;
        if (p.Stored == DType.I32)
        {
            if (t.Device == Device.Cpu && t.IsContiguous) stream.Write(MemoryMarshal.AsBytes(t.AsSpan<int>()));
            else stream.Write(MemoryMarshal.AsBytes(t.ToIntArray().AsSpan()));
            return;
        }
        if (p.Stored == DType.F32 && t.DType == DType.F32 && t.Device == Device.Cpu && t.IsContiguous)
        {
            stream.Write(MemoryMarshal.AsBytes(t.AsSpan<float>()));
            return;
        }
        float[] values = t.ToFloatArray();
        switch (p.Stored)
        {
            case DType.F32:
                stream.Write(MemoryMarshal.AsBytes(values.AsSpan()));
                break;
            case DType.BF16:
            {
                var half = new ushort[values.Length];
                for (int i = 0; i < values.Length; i++) half[i] = Bf16.FromFloat(values[i]);
                stream.Write(MemoryMarshal.AsBytes(half.AsSpan()));
                break;
            }
            case DType.F16:
            {
                var half = new Half[values.Length];
                for (int i = 0; i < values.Length; i++) half[i] = (Half)values[i];
                stream.Write(MemoryMarshal.AsBytes(half.AsSpan()));
                break;
            }
            default:
                throw new ArgumentException($"cannot store tensor '{p.Name}' as {p.Stored.Name()}");
        }
    }
}
