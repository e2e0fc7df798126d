// Policy: supernet training trains sub-networks in place: each sampled sub-network runs through the zero-copy views
// of the parent's weights (LanguageModel.Forward with an ActiveArchitecture), its gradient lands in the parent's
// gradient slices, and one optimizer step follows all of a step's backward passes (whittle: loss.backward() per
// sub-network, then optimizer.step()). Each sub-network has its own tape, freed after its backward pass, so a step holds
// one sub-network's activations at a time. In-place distillation keeps no teacher weights: the whole network's logits
// (N, V) are copied out of its tape (detached) and teach the sampled sub-networks in the same step.
using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Search;

/// <summary>How a supernet run trains: the sampler (strategy, k, bins, seed) and, with in-place distillation, the KD loss
/// of the sub-networks (α·CE + β·KL(whole ‖ sub-network) at temperature τ); null: every sub-network on plain CE.</summary>
public sealed record SupernetSettings(SubnetSampler Sampler, DistillSettings? InplaceKd);

public static class SupernetTraining
{
    /// <summary>
    /// The trainer's micro-batch step for a supernet run. The logged loss is the mean of the sampled sub-networks'
    /// objectives; Extra holds each one's objective by name (largest, random1, …, smallest). The gradient is the sum of
    /// their gradients (each scaled by the trainer's 1 / accum), as whittle accumulates them.
    /// </summary>
    public static MicroBatchStep Create(LanguageModel model, SupernetSettings settings)
    {
        if (settings.InplaceKd is { } kd)
        {
            kd.Validate();
            if (settings.Sampler.Strategy == SupernetStrategy.Standard)
                throw new WhittleException("--inplace-kd needs sub-networks to teach: use --strategy sandwich or random");
        }
        var backend = model.Backend;
        return (inputs, targets, step, gradScale) =>
        {
            if (settings.InplaceKd is not null && model.ChunksLoss((int)targets.Count))
                throw new WhittleException("--inplace-kd keeps the whole network's (N, V) logits: it cannot be combined with " +
                    "--loss-chunk-rows");
            var subnets = settings.Sampler.ForStep(step);
            var extra = new Dictionary<string, double>();
            double sum = 0;
            Tensor? teacher = null;   // (N, V) the whole network's logits, detached
            try
            {
                foreach (var s in subnets)
                {
                    using var tape = new Tape(backend);
                    Var loss;
                    if (settings.InplaceKd is not { } kdSettings)
                        loss = model.Loss(tape, inputs, targets, s.Architecture);
                    else if (s.Role == SubnetRole.Largest)
                    {
                        var logits = model.Forward(tape, inputs, s.Architecture);
                        teacher = Detach(backend, logits.Data);
                        loss = tape.CrossEntropy(logits, targets.Reshape((int)targets.Count));
                    }
                    else
                    {
                        teacher ??= WholeNetworkLogits(model, inputs);   // random strategy: the whole network is not trained
                        var logits = model.Forward(tape, inputs, s.Architecture);
                        loss = tape.Distillation(logits, DistillTeacher.Full(teacher), targets.Reshape((int)targets.Count),
                            kdSettings, out _);
                    }
                    double value = loss.Data.ToFloatArray()[0];
                    if (!double.IsFinite(value)) return (value, extra, null);
                    using (var seed = backend.Zeros(DType.F32, 1)) { backend.Fill(seed, gradScale); tape.Backward(loss, seed); }
                    extra[s.Name] = value;
                    sum += value;
                }
            }
            finally { teacher?.Dispose(); }
            return (sum / subnets.Count, extra, null);
        };
    }

    static Tensor Detach(IBackend backend, Tensor logits)
    {
        var copy = backend.Empty(DType.F32, logits.ShapeArray);
        backend.Copy(logits, copy);
        return copy;
    }

    /// <summary>The whole network's logits (N, V) in no-grad mode, owned by the caller.</summary>
    static Tensor WholeNetworkLogits(LanguageModel model, Tensor inputs)
    {
        using var tape = new Tape(model.Backend, recording: false);
        return Detach(model.Backend, model.Forward(tape, inputs).Data);
    }

    /// <summary>
    /// Moves the per-sub-network objectives of a step's metrics line into a "subnets" array with each one's architecture
    /// and parameter counts (the sampler gives the same sub-networks for the step again: it is a function of the step).
    /// </summary>
    public static Action<StepRecord, JsonObject> Annotator(SubnetSampler sampler) => (record, line) =>
    {
        var array = new JsonArray();
        foreach (var s in sampler.ForStep(record.Step))
        {
            if (!record.Extra.TryGetValue(s.Name, out double loss)) continue;
            line.Remove(s.Name);
            array.Add((JsonNode)new JsonObject
            {
                ["name"] = s.Name, ["params"] = s.Parameters.Total, ["non_embedding_params"] = s.Parameters.NonEmbedding, ["loss"] = loss,
                ["architecture"] = SubnetSpec.ToJson(s.Architecture),
            });
        }
        line["subnets"] = array;
    };
}
