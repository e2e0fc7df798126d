// Policy: the two kinds of mutation the fuzz tests apply, both driven only by a seeded System.Random so a case is
// reproduced by its seed alone. Structure-aware: parse the (valid) JSON, then replace values with values of another
// type or boundary numbers, delete keys and array elements, add unknown keys. Byte-level: bit flips, truncations,
// interesting bytes, inserted and deleted ranges — what a disk, a transfer or a hostile hand does to a file.
using System.Text;
using System.Text.Json.Nodes;

namespace Whittle.Native.Tests.Fuzz;

static class Mutators
{
    /// <summary>Replacement values: every JSON type, numbers at the edges of int32/int64/uint64/double, hostile strings.</summary>
    static readonly string[] Values =
    [
        "null", "true", "false", "0", "-1", "1", "2", "3", "7", "64", "255", "4095", "4096", "65535", "65536", "2147483647", "2147483648",
        "-2147483648", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616", "4611686018427387904",
        "1e308", "1e999", "-1e-300", "0.5", "-0.0", "3.7", "1.0", "2000000000",
        "\"\"", "\"x\"", "\"yes\"", "\"gpt_neox\"", "\"BPE\"", "\"ByteLevel\"", "\"uint32\"", "\"../../etc/hostname\"", "\"/etc/hostname\"",
            "\"NaN\"", "\"-1\"",
        "\"18446744073709551615\"", "\"Isolated\"", "\"" + new string('a', 300) + "\"", "\"\\u0000\"",
        "[]", "[null]", "[1, 2]", "[\"a\", \"b\"]", "[[]]", "{}", "{\"type\": \"BPE\"}", "{\"a\": null}", "{\"Regex\": \"(\"}",
        new string('[', 70) + new string(']', 70),
    ];

    public static byte[] MutateJson(byte[] original, Random rng)
    {
        var root = JsonNode.Parse(original, documentOptions: Deep);
        int n = 1 + rng.Next(3);
        for (int i = 0; i < n; i++) root = MutateOnce(root, rng);
        return Encoding.UTF8.GetBytes(root?.ToJsonString(DeepWrite) ?? "null");
    }

    // The pool's 70-deep array must get through the mutator itself: deeper than System.Text.Json's default of 64 is the point.
    static readonly System.Text.Json.JsonDocumentOptions Deep = new() { MaxDepth = 1024 };
    static readonly System.Text.Json.JsonSerializerOptions DeepWrite = new() { MaxDepth = 1024 };

    static JsonNode? Value(Random rng) => JsonNode.Parse(Values[rng.Next(Values.Length)], documentOptions: Deep);

    /// <summary>
    /// Walks down from the root, stopping at each level with probability 1/3 (so top-level fields are hit as often as
    /// entries deep in a 4096-entry vocabulary), then replaces, deletes or adds at the chosen place.
    /// </summary>
    static JsonNode? MutateOnce(JsonNode? root, Random rng)
    {
        if (root is null || rng.Next(40) == 0) return Value(rng);   // the whole document of another type
        JsonNode node = root;
        while (true)
        {
            var children = Children(node);
            if (children.Count == 0 || (node != root && rng.Next(3) == 0)) break;
            var next = children[rng.Next(children.Count)];
            if (next is null || Children(next).Count == 0)
            {
                MutateChildOf(node, rng, children.IndexOf(next));
                return root;
            }
            node = next;
        }
        if (node.Parent is { } parent) MutateChildOf(parent, rng, Children(parent).IndexOf(node));
        else MutateChildOf(node, rng, rng.Next(Math.Max(1, Children(node).Count)));
        return root;
    }

    static List<JsonNode?> Children(JsonNode node) => node switch
    {
        JsonObject o => o.Select(kv => kv.Value).ToList(),
        JsonArray a => a.ToList(),
        _ => [],
    };

    static void MutateChildOf(JsonNode parent, Random rng, int index)
    {
        int op = rng.Next(10);
        switch (parent)
        {
            case JsonObject o when o.Count > 0:
                var key = o.ElementAt(Math.Clamp(index, 0, o.Count - 1)).Key;
                if (op < 6) o[key] = Value(rng);
                else if (op < 9) o.Remove(key);
                else o["fuzz_" + rng.Next(100)] = Value(rng);
                break;
            case JsonArray a when a.Count > 0:
                int i = Math.Clamp(index, 0, a.Count - 1);
                if (op < 6) a[i] = Value(rng);
                else if (op < 9) a.RemoveAt(i);
                else a.Insert(i, Value(rng));
                break;
            case JsonObject o: o["fuzz"] = Value(rng); break;
            case JsonArray a: a.Add(Value(rng)); break;
        }
    }

    /// <param name="hot">Bytes worth hitting more often (e.g. a safetensors header): half the edits land there.</param>
    public static byte[] MutateBytes(byte[] original, Random rng, int hot = 0)
    {
        var data = new List<byte>(original);
        int Pos(bool insert = false)
        {
            int len = data.Count + (insert ? 1 : 0);
            if (len == 0) return 0;
            return hot > 0 && rng.Next(2) == 0 ? rng.Next(Math.Min(hot, len)) : rng.Next(len);
        }
        int n = 1 + rng.Next(4);
        for (int k = 0; k < n; k++)
        {
            switch (rng.Next(8))
            {
                case 0 or 1 or 2:   // bit flips
                    if (data.Count == 0) break;
                    for (int f = 1 + rng.Next(8); f > 0; f--) { int p = Pos(); data[p] ^= (byte)(1 << rng.Next(8)); }
                    break;
                case 3:             // truncation
                    if (data.Count > 0) { int cut = rng.Next(data.Count); data.RemoveRange(cut, data.Count - cut); }
                    break;
                case 4:             // an interesting byte
                    if (data.Count == 0) break;
                    byte[] interesting = [
                        0x00, 0xFF, 0x7F, 0x80, (byte)'"', (byte)'{', (byte)'}', (byte)'[', (byte)'-', (byte)'9', (byte)'\\', (byte)'\n'];
                    data[Pos()] = interesting[rng.Next(interesting.Length)];
                    break;
                case 5:             // inserted random bytes
                    var ins = new byte[1 + rng.Next(16)]; rng.NextBytes(ins);
                    data.InsertRange(Pos(insert: true), ins);
                    break;
                case 6:             // deleted range
                    if (data.Count == 0) break;
                    int at = Pos(); data.RemoveRange(at, Math.Min(data.Count - at, 1 + rng.Next(32)));
                    break;
                default:            // a 4- or 8-byte field set to an extreme
                    if (data.Count < 8) break;
                    int q = Math.Min(Pos(), data.Count - 8);
                    var extreme = rng.Next(4) switch { 0 => ulong.MaxValue, 1 => 1UL << 62, 2 => (ulong)int.MaxValue + 1, _ => 0UL };
                    BitConverter.GetBytes(extreme).AsSpan(0, rng.Next(2) == 0 ? 4 : 8).CopyTo(
                        System.Runtime.InteropServices.CollectionsMarshal.AsSpan(data).Slice(q));
                    break;
            }
        }
        return data.ToArray();
    }
}
