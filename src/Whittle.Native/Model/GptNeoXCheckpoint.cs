using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>
/// Loading and saving GPT-NeoX model directories in Hugging Face's layout (config.json + model.safetensors, or
/// sharded with model.safetensors.index.json). Loading is strict: every parameter the config implies must be present
/// with exactly the implied shape, and any tensor that is neither a parameter nor one of the non-parameter buffers
/// older transformers versions saved is an error (it usually means the wrong architecture).
/// Saving is atomic at the directory level: a complete directory is built beside the target and renamed into place.
/// </summary>
public static class GptNeoXCheckpoint
{
    /// <summary>Buffers (not parameters) that older transformers versions stored in GPT-NeoX checkpoints.</summary>
    static bool IsKnownBuffer(string name) =>
        name.EndsWith(".attention.bias") || name.EndsWith(".attention.masked_bias") || name.EndsWith(".rotary_emb.inv_freq");

    public static GptNeoX Load(string dir, IBackend backend)
    {
        var config = GptNeoXConfig.Load(dir);
        using var reader = new CheckpointReader(dir);
        CheckTensors(dir, config, reader);
        // The weights pass through one host buffer indexed by int.
        if (ParameterCount.Of(config).Total is var total && total > int.MaxValue)
            throw new InvalidFileException(dir, $"the model has {total:N0} parameters; loading holds at most {int.MaxValue:N0}");
        var model = new GptNeoX(config, backend);
        try
        {
            model.NonFiniteTensors = ReadInto(dir, reader, model);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads a checkpoint's weights into an existing model of the same architecture (resuming a run): straight into one
    /// host buffer and on to the model's backend, with no second model on the way.
    /// </summary>
    public static void LoadInto(string dir, GptNeoX model)
    {
        var config = GptNeoXConfig.Load(dir);
        static IEnumerable<(string, string)> Shapes(GptNeoXConfig c) => GptNeoX.Layout(c).Select(p => (p.Name, string.Join(',', p.Shape)));
        if (!Shapes(config).SequenceEqual(Shapes(model.Config)))
            throw new InvalidFileException(
                dir, "the checkpoint's architecture differs from the model being resumed (compare their config.json)");
        using var reader = new CheckpointReader(dir);
        CheckTensors(dir, config, reader);
        model.NonFiniteTensors = ReadInto(dir, reader, model);
    }

    /// <summary>Every parameter of <paramref name="model"/> from the checkpoint, through one host buffer; the names of tensors holding NaN
    /// or Inf.</summary>
    static List<string> ReadInto(string dir, CheckpointReader reader, GptNeoX model)
    {
        using var host = Tensor.Zeros(DType.F32, checked((int)model.Parameters.Count));
        var all = host.AsSpan<float>();
        var nonFinite = new List<string>();
        foreach (var p in model.Parameters.Entries)
        {
            var values = all.Slice((int)p.Offset, (int)p.Count);
            reader.ReadFloats(p.Name, values);
            if (CountNonFinite(values) is > 0 and var n)
            {
                nonFinite.Add(p.Name);
                Warnings.Warn($"{dir}: tensor '{p.Name}' holds {n:N0} NaN or Inf values of {values.Length:N0}; outputs computed from it " +
                    $"will be NaN");
            }
        }
        model.LoadFlat(host);
        return nonFinite;
    }

    /// <summary>NaN and ±Inf are exactly the floats for which x − x is not 0.</summary>
    internal static int CountNonFinite(ReadOnlySpan<float> x)
    {
        int n = 0, i = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            var v = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(x);
            foreach (var e in v)
                if (!System.Numerics.Vector.EqualsAll(e - e, System.Numerics.Vector<float>.Zero))
                    for (int j = 0; j < System.Numerics.Vector<float>.Count; j++) if (!float.IsFinite(e[j])) n++;
            i = v.Length * System.Numerics.Vector<float>.Count;
        }
        for (; i < x.Length; i++) if (!float.IsFinite(x[i])) n++;
        return n;
    }

    /// <summary>Checks names and shapes of a checkpoint against a config without reading any weights.</summary>
    public static void CheckTensors(string dir, GptNeoXConfig config, CheckpointReader reader)
    {
        var expected = GptNeoX.Layout(config).ToDictionary(p => p.Name, p => p.Shape);
        foreach (var (name, shape) in expected)
        {
            if (!reader.Contains(name))
                throw new InvalidFileException(dir, $"missing tensor '{name}': config.json implies shape {Tensor.FormatShape(shape)}");
            var found = reader.Find(name).Shape;
            if (!found.AsSpan().SequenceEqual(shape))
                throw new InvalidFileException(
                    dir, $"shape {Tensor.FormatShape(found)} does not match {Tensor.FormatShape(shape)} implied by config.json", name);
        }
        var unexpected = reader.Names.Where(n => !expected.ContainsKey(n) && !IsKnownBuffer(n)).Take(5).ToList();
        if (unexpected.Count > 0)
            throw new InvalidFileException(dir, $"unexpected tensors for a GPT-NeoX model: {string.Join(", ", unexpected)}");
    }

    /// <summary>
    /// Writes config.json + model.safetensors (sharded above <paramref name="maxShardBytes"/>) into <paramref name="dir"/>,
    /// replacing it as a whole. <paramref name="extraFiles"/> (e.g. the tokenizer) are copied in before the rename.
    /// </summary>
    public static void Save(
        GptNeoX model, string dir, DType storeAs = DType.F32, long maxShardBytes = long.MaxValue, IEnumerable<string>? extraFiles = null)
        => SaveWith(model, dir, storeAs, maxShardBytes, extraFiles, alsoWrite: null);

    /// <summary>As <see cref="Save"/>, letting the caller add files (optimizer state, trainer state) to the directory before it is renamed
    /// into place.</summary>
    public static void SaveWith(
        GptNeoX model, string dir, DType storeAs = DType.F32, long maxShardBytes = long.MaxValue, IEnumerable<string>? extraFiles = null,
        Action<string>? alsoWrite = null)
    {
        using var host = model.Parameters.Flat.Device == Device.Cpu ? null : model.Parameters.Flat.ToCpu();
        var flat = host ?? model.Parameters.Flat;
        var tensors = model.Parameters.Entries.Select(p =>
        {
            var t = flat.AsStrided(p.Shape, Tensor.ContiguousStrides(p.Shape), p.Offset);
            t.Name = p.Name;
            return (p.Name, t);
        });
        AtomicDirectory.Write(dir, tmp =>
        {
            model.Config.Save(Path.Combine(tmp, "config.json"));
            CheckpointWriter.Write(tmp, tensors, maxShardBytes, storeAs);
            foreach (var f in extraFiles ?? []) File.Copy(f, Path.Combine(tmp, Path.GetFileName(f)));
            alsoWrite?.Invoke(tmp);
        });
    }
}
