// Hugging Face model directories: one "model.safetensors", or shards listed by "model.safetensors.index.json"
// ({"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file}}), the layout transformers'
// save_pretrained writes and from_pretrained loads. Policy: the reader validates the whole directory when opened
// (every shard exists and holds every tensor the index assigns to it), so a bad checkpoint fails before any
// training starts, with an error naming the file and the tensor. The writer replaces each file atomically and
// writes the index last; shards of an earlier save that the new index does not name are removed afterwards.
// (Overwriting a sharded checkpoint in place is not atomic as a whole: a crash between shards can leave the old
// index over a mix of shards, which the reader's validation usually, not always, rejects. Save to a new directory
// when that matters.)
using System.Text.Json;
using System.Text.Json.Nodes;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

public sealed class CheckpointReader : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    readonly List<SafeTensorsFile> _files = new();
    readonly Dictionary<string, SafeTensorsFile> _owner = new(StringComparer.Ordinal);
    readonly string _describedAs; // the file missing-tensor errors name: the single file or the index

    /// <summary>The directory given (or the file, when a .safetensors file was given directly).</summary>
    public string Path { get; }
    public bool IsSharded { get; }
    public IEnumerable<string> Names => _owner.Keys;
    public IReadOnlyList<SafeTensorsFile> Files => _files;

    public CheckpointReader(string directoryOrFile)
    {
        Path = directoryOrFile;
        try
        {
            if (File.Exists(directoryOrFile))
            {
                _describedAs = directoryOrFile;
                AddWholeFile(directoryOrFile);
                return;
            }
            if (!Directory.Exists(directoryOrFile))
                throw new InvalidFileException(directoryOrFile, "no such checkpoint directory or file");
            string single = System.IO.Path.Combine(directoryOrFile, SingleFileName);
            string index = System.IO.Path.Combine(directoryOrFile, IndexFileName);
            if (File.Exists(single))
            {
                _describedAs = single;
                AddWholeFile(single);
            }
            else if (File.Exists(index))
            {
                _describedAs = index;
                IsSharded = true;
                OpenSharded(directoryOrFile, index);
            }
            else
            {
                string hint = File.Exists(System.IO.Path.Combine(directoryOrFile, "pytorch_model.bin"))
                    ? " (it has pytorch_model.bin, a pickle checkpoint this engine does not read: convert it to safetensors)" : "";
                throw new InvalidFileException(
                    directoryOrFile, $"is not a checkpoint: it contains neither {SingleFileName} nor {IndexFileName}{hint}");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    void AddWholeFile(string path)
    {
        var f = new SafeTensorsFile(path);
        _files.Add(f);
        foreach (var name in f.Tensors.Keys) _owner[name] = f;
    }

    void OpenSharded(string dir, string index)
    {
        List<KeyValuePair<string, JsonNode?>> map;
        try
        {
            InputFile.RequireRegular(index);
            if (JsonNode.Parse(File.ReadAllText(index)) is not JsonObject obj)
                throw new InvalidFileException(index, "expected a JSON object with a \"weight_map\"");
            if (obj["weight_map"] is not JsonObject weightMap)
                throw new InvalidFileException(index, "has no \"weight_map\" object (tensor name -> shard file)");
            map = weightMap.ToList(); // JsonObject parses lazily: duplicate names surface here, as ArgumentException
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidFileException(index, $"is not a valid index: {e.Message.ReplaceLineEndings(" ")}");
        }

        var byShard = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        foreach (var (name, value) in map)
        {
            if (value is not JsonValue v || !v.TryGetValue(out string? shard) || string.IsNullOrEmpty(shard))
                throw new InvalidFileException(index, "weight_map value should be a shard file name", name);
            // Shards live beside the index; a path elsewhere is either a corrupt index or a hostile one.
            if (shard != System.IO.Path.GetFileName(shard) || shard is "." or "..")
                throw new InvalidFileException(
                    index, $"weight_map names shard \"{shard}\"; expected a file name in the same directory", name);
            if (!byShard.TryGetValue(shard, out var file))
            {
                string shardPath = System.IO.Path.Combine(dir, shard);
                if (!File.Exists(shardPath))
                    throw new InvalidFileException(index, $"weight_map puts it in shard {shard}, which does not exist in {dir}", name);
                file = new SafeTensorsFile(shardPath);
                _files.Add(file);
                byShard[shard] = file;
            }
            if (!file.Contains(name))
                throw new InvalidFileException(index, $"weight_map puts it in shard {shard}, which does not contain it", name);
            _owner[name] = file;
        }
        if (_owner.Count == 0) throw new InvalidFileException(index, "weight_map lists no tensors");
    }

    public bool Contains(string name) => _owner.ContainsKey(name);

    public TensorEntry Find(string name) => Owner(name).Tensors[name];

    /// <summary>The file holding <paramref name="name"/> (for error messages and per-shard reads).</summary>
    public SafeTensorsFile Owner(string name) =>
        _owner.TryGetValue(name, out var f) ? f : throw SafeTensorsFile.MissingTensor(_describedAs, name, _owner.Keys);

    public Tensor ReadTensor(string name) => Owner(name).ReadTensor(name);

    public void ReadFloats(string name, Span<float> dst) => Owner(name).ReadFloats(name, dst);

    public float[] ReadFloats(string name) => Owner(name).ReadFloats(name);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
        _owner.Clear();
    }
}

public static class CheckpointWriter
{
    /// <summary>transformers refuses safetensors files whose metadata lacks a known "format"; "pt" is what PyTorch writes.</summary>
    static readonly Dictionary<string, string> FileMetadata = new() { ["format"] = "pt" };

    /// <summary>
    /// Writes <paramref name="tensors"/> into <paramref name="dir"/> (created if missing): one model.safetensors, or,
    /// when the data exceed <paramref name="maxShardBytes"/>, shards model-0000i-of-0000N.safetensors plus
    /// model.safetensors.index.json. A tensor larger than the limit gets a shard of its own.
    /// </summary>
    public static void Write(
        string dir, IEnumerable<(string Name, Tensor Tensor)> tensors, long maxShardBytes = long.MaxValue, DType? storeAs = null)
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), "the shard size limit must be positive");
        if (storeAs is DType.I32)
            throw new ArgumentException("storeAs applies to float tensors: F32, BF16 or F16, not I32", nameof(storeAs));
        Directory.CreateDirectory(dir);
        var list = tensors.ToList();
        var plan = SafeTensorsWriter.Plan(list, storeAs ?? DType.F32);
        long total = plan.Sum(p => p.End - p.Begin);
        string single = Path.Combine(dir, CheckpointReader.SingleFileName);
        string index = Path.Combine(dir, CheckpointReader.IndexFileName);

        if (total <= maxShardBytes)
        {
            SafeTensorsWriter.Write(single, list, FileMetadata, storeAs);
            // A stale index next to the new file would describe another model; model.safetensors wins, but remove the confusion.
            File.Delete(index);
            return;
        }

        // Greedy in the writer's tensor order: a shard closes when the next tensor would push it over the limit.
        var shards = new List<List<(string, Tensor)>>();
        long current = 0;
        foreach (var p in plan)
        {
            long bytes = p.End - p.Begin;
            if (shards.Count == 0 || (current + bytes > maxShardBytes && current > 0)) { shards.Add(new()); current = 0; }
            shards[^1].Add((p.Name, p.Tensor));
            current += bytes;
        }

        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            SafeTensorsWriter.Write(Path.Combine(dir, file), shards[i], FileMetadata, storeAs);
            foreach (var (name, _) in shards[i]) weightMap[name] = file;
        }

        var map = new JsonObject();
        foreach (var (name, file) in weightMap) map[name] = file;
        var root = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = total },
            ["weight_map"] = map,
        };
        AtomicFile.Write(index, fs =>
        {
            using var w = new Utf8JsonWriter(
                fs, new JsonWriterOptions { Indented = true,
                Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
            root.WriteTo(w);
        });
        // model.safetensors takes precedence over an index for every loader: an old one would shadow these shards.
        File.Delete(single);
        var written = new HashSet<string>(weightMap.Values, StringComparer.Ordinal);
        foreach (var stale in Directory.GetFiles(dir, "model-*-of-*.safetensors"))
            if (!written.Contains(Path.GetFileName(stale))) File.Delete(stale);
    }
}
