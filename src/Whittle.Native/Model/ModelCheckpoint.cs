using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>
/// Loading and saving model directories of any family in Hugging Face's layout (config.json + model.safetensors, or
/// sharded with model.safetensors.index.json; weights stored as f32, bf16 or f16). Loading is strict: every parameter the
/// config implies must be present with exactly the implied shape, and any tensor that is neither a parameter nor one the
/// family ignores (buffers older transformers versions saved, a tied model's lm_head) is an error (it usually means the
/// wrong architecture). Saving is atomic at the directory level: a complete directory is built beside the target and
/// renamed into place. A tied head is saved once, as the embedding, as transformers saves it.
/// </summary>
public static class ModelCheckpoint
{
    /// <summary>The model of a directory, of whichever family its config.json names.</summary>
    public static LanguageModel Load(string dir, IBackend backend) => Load(ModelConfig.Load(dir), dir, backend);

    /// <summary>A model of <paramref name="config"/> (read from <paramref name="dir"/>) with the directory's weights.</summary>
    public static LanguageModel Load(ModelConfig config, string dir, IBackend backend)
    {
        using var reader = new CheckpointReader(dir);
        CheckTensors(dir, config, reader);
        // The weights pass through one host buffer indexed by int.
        if (config.CountParameters().Total is var total && total > int.MaxValue)
            throw new InvalidFileException(dir, $"the model has {total:N0} parameters; loading holds at most {int.MaxValue:N0}");
        LanguageModel model = config switch
        {
            GptNeoXConfig c => new GptNeoX(c, backend),
            LlamaConfig c => new Llama(c, backend),
            _ => throw new ArgumentException($"no model for {config.GetType().Name}"),
        };
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
    public static void LoadInto(string dir, LanguageModel model)
    {
        var config = ModelConfig.Load(dir);
        static IEnumerable<(string, string)> Shapes(ModelConfig c) => c.Layout().Select(p => (p.Name, string.Join(',', p.Shape)));
        if (!Shapes(config).SequenceEqual(Shapes(model.Config)))
            throw new InvalidFileException(
                dir, "the checkpoint's architecture differs from the model being resumed (compare their config.json)");
        using var reader = new CheckpointReader(dir);
        CheckTensors(dir, config, reader);
        model.NonFiniteTensors = ReadInto(dir, reader, model);
    }

    /// <summary>Every parameter of <paramref name="model"/> from the checkpoint, through one host buffer; the names of tensors holding NaN
    /// or Inf.</summary>
    static List<string> ReadInto(string dir, CheckpointReader reader, LanguageModel model)
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
    public static void CheckTensors(string dir, ModelConfig config, CheckpointReader reader)
    {
        var expected = config.Layout().ToDictionary(p => p.Name, p => p.Shape);
        foreach (var (name, shape) in expected)
        {
            if (!reader.Contains(name))
                throw new InvalidFileException(dir, $"missing tensor '{name}': config.json implies shape {Tensor.FormatShape(shape)}");
            var found = reader.Find(name).Shape;
            if (!found.AsSpan().SequenceEqual(shape))
                throw new InvalidFileException(
                    dir, $"shape {Tensor.FormatShape(found)} does not match {Tensor.FormatShape(shape)} implied by config.json", name);
        }
        var unexpected = reader.Names.Where(n => !expected.ContainsKey(n) && !config.IsIgnoredTensor(n)).Take(5).ToList();
        if (unexpected.Count > 0)
            throw new InvalidFileException(dir, $"unexpected tensors for a {config.ModelType} model: {string.Join(", ", unexpected)}");
    }

    /// <summary>
    /// Writes config.json + model.safetensors (sharded above <paramref name="maxShardBytes"/>) into <paramref name="dir"/>,
    /// replacing it as a whole. <paramref name="extraFiles"/> (e.g. the tokenizer) are copied in before the rename.
    /// </summary>
    public static void Save(LanguageModel model, string dir, DType storeAs = DType.F32, long maxShardBytes = long.MaxValue,
        IEnumerable<string>? extraFiles = null)
        => SaveWith(model, dir, storeAs, maxShardBytes, extraFiles, alsoWrite: null);

    /// <summary>As <see cref="Save"/>, letting the caller add files (optimizer state, trainer state) to the directory before it is renamed
    /// into place.</summary>
    public static void SaveWith(LanguageModel model, string dir, DType storeAs = DType.F32, long maxShardBytes = long.MaxValue,
        IEnumerable<string>? extraFiles = null, Action<string>? alsoWrite = null)
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

/// <summary>
/// GPT-NeoX model directories, for the commands that handle only GPT-NeoX so far (importance, search, extract, distill,
/// salt): loading anything else is an error naming its model_type. Saving is <see cref="ModelCheckpoint"/>'s.
/// </summary>
public static class GptNeoXCheckpoint
{
    public static GptNeoX Load(string dir, IBackend backend) => (GptNeoX)ModelCheckpoint.Load(GptNeoXConfig.Load(dir), dir, backend);

    public static void Save(GptNeoX model, string dir, DType storeAs = DType.F32, long maxShardBytes = long.MaxValue,
        IEnumerable<string>? extraFiles = null)
        => ModelCheckpoint.Save(model, dir, storeAs, maxShardBytes, extraFiles);
}
