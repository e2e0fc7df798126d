using System.CommandLine;
using System.Text.Json.Nodes;
using Whittle.Native;
using Whittle.Native.Data;
using Whittle.Native.Distillation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Cli;

/// <summary>`whittle distill`: pretrain a student with knowledge distillation from a teacher (Whittle's training half).</summary>
static class DistillCommand
{
    public static Command Create()
    {
        var cmd = new Command("distill", "Train a student with loss α·CE + β·KD against a teacher run in no-grad mode on the same batches. Same run directory, checkpoints and resume as pretrain.");
        var t = new TrainingCli();
        t.AddTo(cmd);
        var teacher = new Option<string>("--teacher") { Description = "Teacher model directory.", Required = true };
        var student = new Option<string?>("--student") { Description = "Student model directory to start from (default: a new model from the architecture flags)." };
        var initSubnet = new Option<string?>("--init-subnet") { Description = "Start from this sub-network of the teacher (JSON spec), extracted as a dense model." };
        var loss = new Option<string>("--loss") { Description = "forward-kl | reverse-kl | symmetric | top-k (forward KL against the teacher's top-k + tail bucket).", DefaultValueFactory = _ => "forward-kl" };
        var topK = new Option<int>("--top-k") { Description = "k for --loss top-k.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "Softmax temperature τ of the KD term (its gradient is scaled by τ²).", DefaultValueFactory = _ => 1f };
        var alpha = new Option<float>("--alpha") { Description = "Weight of the cross-entropy term.", DefaultValueFactory = _ => 0.5f };
        var beta = new Option<float>("--beta") { Description = "Weight of the distillation term.", DefaultValueFactory = _ => 0.5f };
        var arch = new ArchitectureOptions();
        foreach (var o in new Option[] { teacher, student, initSubnet, loss, topK, temperature, alpha, beta, t.TeacherPrecision }) cmd.Options.Add(o);
        arch.AddTo(cmd);
        cmd.SetAction(p =>
        {
            // Every check before any work.
            var (kind, k) = p.GetValue(loss) switch
            {
                "forward-kl" => (DistillKind.ForwardKl, 0),
                "reverse-kl" => (DistillKind.ReverseKl, 0),
                "symmetric" => (DistillKind.Symmetric, 0),
                "top-k" => (DistillKind.ForwardKl, p.GetValue(topK)),
                var other => throw new WhittleException($"unknown --loss '{other}' (expected forward-kl, reverse-kl, symmetric or top-k)"),
            };
            float tau = p.GetValue(temperature);
            if (!(tau > 0) || !float.IsFinite(tau)) throw new WhittleException($"--temperature must be > 0, got {tau}");
            if (p.GetValue(loss) == "top-k" && k <= 0) throw new WhittleException($"--top-k must be at least 1, got {k}");
            if (p.GetValue(student) is not null && p.GetValue(initSubnet) is not null) throw new WhittleException("give --student or --init-subnet, not both");
            string teacherDir = p.GetValue(teacher)!;
            using var data = TokenDataset.Open(p.GetValue(t.Data)!);
            TrainingCli.RequireSameTokenizer(teacherDir, data);
            var options = t.Options(p, TrainingCli.TokenizerOf(data));
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            using var teacherModel = GptNeoXCheckpoint.Load(teacherDir, backend);
            options = t.WithTeacherPrecision(p, teacherModel, options);
            using var studentModel = BuildStudent(p, student, initSubnet, arch, teacherDir, teacherModel, data, backend, options);
            if (k > studentModel.Config.VocabSize) throw new WhittleException($"--top-k {k} exceeds the vocabulary ({studentModel.Config.VocabSize})");
            var settings = new DistillSettings(kind, tau, p.GetValue(alpha), p.GetValue(beta));
            var lossFn = DistillationLoss.Create(studentModel, teacherModel, settings, k, _ => (settings.Alpha, settings.Beta));

            using var trainer = new Trainer(studentModel, data, options);
            var sc = ParameterCount.Of(studentModel.Config); var tc = ParameterCount.Of(teacherModel.Config);
            return t.Train(p, trainer, studentModel, options, backend, "distill",
                $"distill: student {sc.Total:N0} parameters, teacher {tc.Total:N0}; loss {settings.Alpha}·CE + {settings.Beta}·{p.GetValue(loss)} (τ = {tau}) on {backend.Name}", lossFn);
        });
        return cmd;
    }

    static GptNeoX BuildStudent(ParseResult p, Option<string?> student, Option<string?> initSubnet, ArchitectureOptions arch, string teacherDir, GptNeoX teacher,
        TokenDataset data, IBackend backend, TrainOptions options)
    {
        if (p.GetValue(student) is { } dir)
        {
            TrainingCli.RequireSameTokenizer(dir, data);
            return GptNeoXCheckpoint.Load(dir, backend);
        }
        if (p.GetValue(initSubnet) is { } spec) return Whittle.Native.Search.Extraction.Extract(teacher, Whittle.Native.Search.SubnetSpec.Load(spec, teacher.Config));
        var c = arch.Config(p, teacher.Config.VocabSize, teacher.Config.EosTokenId, options.SeqLen);
        return GptNeoX.CreateRandom(c, backend, options.Seed);
    }
}
