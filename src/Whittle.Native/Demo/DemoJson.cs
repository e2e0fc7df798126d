// Policy: results.json holds every measurement of the demo (DemoResults, field for field, snake_case) plus an
// "analysis" object with the derived numbers the report prints, so any number in the report can be traced to this file.
// Reading it back restores DemoResults exactly (doubles round-trip; non-finite doubles, which JSON lacks, are written as
// the strings "NaN", "Infinity", "-Infinity"); "analysis" and the per-point "perplexity" are derived and ignored on load.
// Built with JsonNode only, so it survives trimming and AOT.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Whittle.Native.Demo;

static class DemoJson
{
    public const int Version = 1;

    public static JsonObject ToJson(DemoResults r, DemoFindings f) => new()
    {
        ["format"] = "whittle-demo-results",
        ["version"] = Version,
        ["preset"] = r.Preset,
        ["device"] = r.Device,
        ["started"] = r.Started.ToString("o", CultureInfo.InvariantCulture),
        ["seconds"] = Num(r.Seconds),
        ["teacher"] = new JsonObject
        {
            ["parameters"] = r.TeacherParameters,
            ["non_embedding"] = r.TeacherNonEmbedding,
            ["architecture"] = r.TeacherArchitecture,
            ["val_loss"] = Num(r.TeacherValLoss),
            ["perplexity"] = Num(Math.Exp(r.TeacherValLoss)),
            ["tokens"] = r.TeacherTokens,
        },
        ["budget"] = new JsonObject { ["parameters"] = r.BudgetParams, ["ratio"] = Num(r.BudgetRatio) },
        ["search"] = new JsonArray(r.Search.Select(p => (JsonNode)SearchPointJson(p)).ToArray()),
        ["students"] = Arms(r.Students),
        ["salt"] = new JsonObject
        {
            ["kd_steps"] = r.SaltKdSteps,
            ["total_steps"] = r.SaltTotalSteps,
            ["small_model"] = r.SaltSmallModel,
            ["small_model_seconds"] = Num(r.SaltSmallSeconds),
            ["cache_seconds"] = Num(r.SaltCacheSeconds),
            ["cache_top_k"] = r.SaltCacheTopK,
            ["arms"] = Arms(r.Salt),
        },
        ["stages"] = new JsonArray(
            r.Stages.Select(
            s => (JsonNode)new JsonObject { ["stage"] = s.Stage, ["seconds"] = Num(s.Seconds), ["cached"] = s.Cached }).ToArray()),
        ["search_objectives"] = r.SearchFront is { } front ? SearchObjectivesJson(front, r) : null,
        ["supernet"] = r.Supernet is { } sn ? SupernetJson(sn, f.Supernet) : null,
        ["analysis"] = Analysis(f, r.SaltTotalSteps),
    };

    // "search_objectives" and "supernet" are absent from files written before the demo had them: they load as null.
    static JsonObject SearchObjectivesJson(SearchObjectives s, DemoResults r) => new()
    {
        // Derived (ignored on load): what the report's sentences count and the reference point's scaled value.
        ["pareto_size"] = s.Pareto.Count,
        ["distinct_evaluated"] = DemoObjectives.DistinctEvaluated(r),
        ["reference_point_scaled"] = Num(DemoObjectives.ReferenceScaled(s)),
        ["hypervolume_share_of_maximum"] =
            new JsonObject(s.Hypervolume.Select(kv => KeyValuePair.Create(kv.Key, Num(kv.Value / s.Maximum)))),
        ["objectives"] = Strings(s.Objectives),
        ["pareto"] = new JsonArray(s.Pareto.Select(p => (JsonNode)new JsonObject
        {
            ["strategy"] = p.Strategy, ["parameters"] = p.Parameters, ["flops"] = Num(p.Flops), ["perplexity"] = Num(p.Perplexity),
            ["spec"] = p.Spec,
        }).ToArray()),
        ["hypervolume"] = new JsonObject(s.Hypervolume.Select(kv => KeyValuePair.Create(kv.Key, Num(kv.Value)))),
        ["reference_point"] = new JsonObject(s.ReferencePoint.Select(kv => KeyValuePair.Create(kv.Key, Num(kv.Value)))),
        ["maximum"] = Num(s.Maximum),
    };

    static SearchObjectives ReadSearchObjectives(JsonObject o) => new(
        Arr(o, "objectives").Select(n => n!.GetValue<string>()).ToList(),
        Arr(o, "pareto").Select(n => n!.AsObject()).Select(p =>
            new ParetoPoint(Str(p, "strategy"), Long(p, "parameters"), Dbl(p, "flops"), Dbl(p, "perplexity"), Str(p, "spec"))).ToList(),
        Obj(o, "hypervolume").ToDictionary(kv => kv.Key, kv => Dbl(o["hypervolume"]!.AsObject(), kv.Key)),
        Obj(o, "reference_point").ToDictionary(kv => kv.Key, kv => Dbl(o["reference_point"]!.AsObject(), kv.Key)),
        Dbl(o, "maximum"));

    static JsonObject SupernetJson(SupernetResults s, SupernetFindings? f) => new()
    {
        ["steps"] = s.Steps,
        ["arms"] = new JsonArray(s.Arms.Select(a => (JsonNode)new JsonObject
        {
            ["name"] = a.Name, ["description"] = a.Description, ["whole_perplexity"] = Num(a.WholePerplexity), ["evaluated"] = a.Evaluated,
            ["best_parameters"] = a.BestParameters, ["best_perplexity"] = Num(a.BestPerplexity), ["best_spec"] = a.BestSpec,
        }).ToArray()),
        // Derived (ignored on load): the plain teacher's searched best and the sandwich parent's gaps below it and the control.
        ["plain_teacher_best_perplexity"] = Num(f?.PlainBest),
        ["gain_over_plain_teacher"] = Num(f?.GainOverPlain),
        ["gain_over_standard"] = Num(f?.GainOverStandard),
        ["findings"] = f is null ? null : Strings(f.Sentences),
    };

    static SupernetResults ReadSupernet(JsonObject o) => new((int)Long(o, "steps"),
        Arr(o, "arms").Select(n => n!.AsObject()).Select(a => new SupernetArm(Str(a, "name"), Str(a, "description"),
            Dbl(a, "whole_perplexity"), (int)Long(a, "evaluated"), Long(a, "best_parameters"), Dbl(a, "best_perplexity"),
            Str(a, "best_spec"))).ToList());

    /// <summary>The "across_seeds" object of a top-level results.json: the seeds, the rule, every effect and quantity per seed.</summary>
    public static JsonObject AcrossSeeds(SeedSet s, IReadOnlyList<EffectAcross> effects, IReadOnlyList<QuantityAcross> quantities) => new()
    {
        ["rule"] = DemoSeeds.Rule,
        ["teacher_seed"] = s.TeacherSeed,
        ["detail_seed"] = s.DetailSeed,
        ["seconds"] = Num(s.Seconds),
        ["count"] = s.Runs.Count,
        ["seeds"] = new JsonArray(s.Runs.Select(r => (JsonNode)JsonValue.Create(r.Seed)).ToArray()),
        ["effects"] = new JsonArray(effects.Select(e => (JsonNode)new JsonObject
        {
            ["key"] = e.Key, ["claim"] = e.Claim,
            ["values"] = new JsonArray(e.Values.Select(v =>
                (JsonNode)new JsonObject { ["seed"] = v.Seed, ["value"] = Num(v.Value), ["holds"] = v.Holds }).ToArray()),
            ["mean"] = Num(e.Mean), ["sd"] = Num(e.Sd), ["n"] = e.N, ["holds_in"] = e.HoldsIn, ["reproduced"] = e.Reproduced,
        }).ToArray()),
        ["quantities"] = new JsonArray(quantities.Select(q => (JsonNode)new JsonObject
        {
            ["arm"] = q.Arm, ["quantity"] = q.Quantity,
            ["values"] = new JsonArray(q.Values.Select(v => (JsonNode)new JsonObject { ["seed"] = v.Seed, ["value"] = Num(v.Value) })
                .ToArray()),
            ["mean"] = Num(q.Mean), ["sd"] = Num(q.Sd), ["n"] = q.N,
        }).ToArray()),
    };

    static JsonObject SearchPointJson(SearchPoint p) => new()
    {
        ["index"] = p.Index, ["strategy"] = p.Strategy, ["parameters"] = p.Parameters, ["perplexity"] = Num(p.Perplexity),
            ["spec"] = p.Spec, ["flops"] = Num(p.Flops),
    };

    static JsonArray Arms(IReadOnlyList<Arm> arms) => new(arms.Select(a => (JsonNode)new JsonObject
    {
        ["name"] = a.Name,
        ["description"] = a.Description,
        ["parameters"] = a.Parameters,
        ["curve"] = new JsonArray(a.Curve.Select(p => (JsonNode)new JsonObject
        {
            ["step"] = p.Step, ["tokens"] = p.Tokens, ["val_loss"] = Num(p.ValLoss), ["perplexity"] = Num(p.Perplexity),
            ["seconds"] = Num(p.Seconds),
        }).ToArray()),
        ["clock"] = a.Clock is not { } c ? null : new JsonObject
        {
            ["seconds"] = Num(c.Seconds), ["kd_steps"] = c.KdSteps, ["kd_step_ms"] = Num(c.KdStepMs),
            ["plain_step_ms"] = Num(c.PlainStepMs), ["teacher_seconds"] = Num(c.TeacherSeconds),
        },
    }).ToArray());

    static JsonObject Analysis(DemoFindings f, int saltTotalSteps) => new()
    {
        ["students"] = new JsonObject
        {
            ["target_perplexity"] = Num(f.StudentTarget),
            ["reference_tokens"] = Num(f.ReferenceTokens),
            ["arms"] = new JsonArray(f.Students.Select(a => (JsonNode)ArmAnalysis(a, "tokens_to_target")).ToArray()),
            ["findings"] = Strings(f.StudentSentences),
        },
        ["search"] = new JsonObject
        {
            ["strategies"] = new JsonArray(f.Strategies.Select(s => (JsonNode)new JsonObject
            {
                ["strategy"] = s.Strategy, ["evaluated"] = s.Evaluated, ["best"] = s.Best is null ? null : SearchPointJson(s.Best),
            }).ToArray()),
            ["evolution_gain"] = new JsonObject(f.EvolutionGain.Select(kv => KeyValuePair.Create(kv.Key, Num(kv.Value)))),
            ["pareto_front"] = new JsonArray(f.Pareto.Select(p => (JsonNode)SearchPointJson(p)).ToArray()),
            ["findings"] = Strings(f.SearchSentences),
        },
        ["salt"] = new JsonObject
        {
            ["target_perplexity"] = Num(f.SaltTarget),
            ["step_to_target"] = Num(f.SaltStep),
            ["fraction_of_steps"] = Num(f.SaltFraction),
            ["kd_fraction"] = Num(f.KdFraction),
            ["arms"] = new JsonArray(f.Salt.Select(a =>
            {
                var o = ArmAnalysis(a, "step_to_target");
                o["fraction_of_steps"] = Num(saltTotalSteps > 0 ? a.ToTarget / saltTotalSteps : null);
                return (JsonNode)o;
            }).ToArray()),
            ["findings"] = Strings(f.SaltSentences),
        },
        ["salt_clock"] = new JsonObject
        {
            ["arms"] = new JsonArray(f.SaltClock.Arms.Select(a => (JsonNode)new JsonObject
            {
                ["name"] = a.Name, ["step_to_target"] = Num(a.StepToTarget), ["seconds_to_target"] = Num(a.SecondsToTarget),
                ["total_seconds"] = Num(a.TotalSeconds), ["kd_step_ms"] = Num(a.KdStepMs), ["plain_step_ms"] = Num(a.PlainStepMs),
                ["teacher_ms_per_kd_step"] = Num(a.TeacherMsPerKdStep), ["kd_overhead"] = Num(a.Overhead),
            }).ToArray()),
            ["saving"] = Num(f.SaltClock.Saving),
            ["saving_with_small_model"] = Num(f.SaltClock.SavingWithSmall),
            ["step_time_saving"] = Num(f.SaltClock.StepTimeSaving),
            ["break_even_kd_overhead"] = Num(f.SaltClock.BreakEvenOverhead),
            ["cached_saving"] = Num(f.SaltClock.CachedSaving),
            ["cached_saving_with_build"] = Num(f.SaltClock.CachedSavingWithBuild),
            ["cached_saving_with_build_and_small_model"] = Num(f.SaltClock.CachedSavingWithAll),
            ["cached_step_time_saving"] = Num(f.SaltClock.CachedStepTimeSaving),
            ["findings"] = Strings(f.SaltClock.Sentences),
        },
    };

    static JsonObject ArmAnalysis(ArmSummary a, string toTargetName) => new()
    {
        ["name"] = a.Name,
        ["parameters"] = a.Parameters,
        ["final_step"] = a.Final?.Step,
        ["final_tokens"] = a.Final?.Tokens,
        ["final_perplexity"] = Num(a.Final?.Perplexity),
        [toTargetName] = Num(a.ToTarget),
        ["speed_up"] = Num(a.SpeedUp),
    };

    static JsonArray Strings(IEnumerable<string> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());

    static JsonNode? Num(double? v) => v switch
    {
        null => null,
        { } d when double.IsFinite(d) => JsonValue.Create(d),
        { } d => JsonValue.Create(double.IsNaN(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity"),
    };

    // ---------------------------------------------------------------- reading back

    public static DemoResults Load(string path)
    {
        if (!File.Exists(path)) throw new WhittleException($"{path}: no such file (expected the results.json written by whittle demo)");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new InvalidFileException(path, "is empty JSON (null)"); }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        { throw new InvalidFileException(path, $"is not a JSON object ({ex.Message})"); }
        try
        {
            if (Str(o, "format") != "whittle-demo-results")
                throw new InvalidFileException(path, "is not a whittle demo results file (\"format\" is not \"whittle-demo-results\")");
            int version = Req(o, "version").GetValue<int>();
            if (version != Version)
                throw new InvalidFileException(path, $"has results format version {version}; this build reads version {Version}");
            var teacher = Obj(o, "teacher");
            var budget = Obj(o, "budget");
            var salt = Obj(o, "salt");
            return new DemoResults
            {
                Preset = Str(o, "preset"),
                Device = Str(o, "device"),
                Started = DateTimeOffset.Parse(Str(o, "started"), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
                Seconds = Dbl(o, "seconds"),
                TeacherParameters = Long(teacher, "parameters"),
                TeacherNonEmbedding = Long(teacher, "non_embedding"),
                TeacherArchitecture = Str(teacher, "architecture"),
                TeacherValLoss = Dbl(teacher, "val_loss"),
                TeacherTokens = Long(teacher, "tokens"),
                BudgetParams = Long(budget, "parameters"),
                BudgetRatio = Dbl(budget, "ratio"),
                Search = Arr(o, "search").Select(n => ReadSearchPoint(n!.AsObject())).ToList(),
                Students = ReadArms(Arr(o, "students")),
                Salt = ReadArms(Arr(salt, "arms")),
                SaltKdSteps = (int)Long(salt, "kd_steps"),
                SaltTotalSteps = (int)Long(salt, "total_steps"),
                SaltSmallModel = Str(salt, "small_model"),
                SaltSmallSeconds = OptDbl(salt, "small_model_seconds"),
                SaltCacheSeconds = OptDbl(salt, "cache_seconds"),
                SaltCacheTopK = salt["cache_top_k"]?.GetValue<int>(),
                Stages = Arr(o, "stages").Select(n => n!.AsObject()).Select(
                    s => new StageTiming(Str(s, "stage"), Dbl(s, "seconds"), Req(s, "cached").GetValue<bool>())).ToList(),
                SearchFront = o["search_objectives"] is JsonObject so ? ReadSearchObjectives(so) : null,
                Supernet = o["supernet"] is JsonObject sn ? ReadSupernet(sn) : null,
            };
        }
        catch (Exception ex)
            when (ex is JsonException or InvalidOperationException or FormatException or KeyNotFoundException or NullReferenceException)
        { throw new InvalidFileException(path, $"is not a valid demo results file ({ex.Message})"); }
    }

    static SearchPoint ReadSearchPoint(JsonObject p) =>
        new((int)Long(p, "index"), Str(p, "strategy"), Long(p, "parameters"), Dbl(p, "perplexity"), Str(p, "spec"), OptDbl(p, "flops"));

    // "seconds" and "clock" are absent from files written before the wall-clock was recorded: they load as null.
    static List<Arm> ReadArms(JsonArray arms) =>
        arms.Select(n => n!.AsObject()).Select(a => new Arm(Str(a, "name"), Str(a, "description"), Long(a, "parameters"),
            Arr(a, "curve").Select(c => c!.AsObject())
                .Select(c => new CurvePoint((int)Long(c, "step"), Long(c, "tokens"), Dbl(c, "val_loss"), OptDbl(c, "seconds"))).ToList(),
            a["clock"] is JsonObject c
                ? new RunClock(Dbl(c, "seconds"), (int)Long(c, "kd_steps"), OptDbl(c, "kd_step_ms"), OptDbl(c, "plain_step_ms"),
                    Dbl(c, "teacher_seconds"))
                : null)).ToList();

    static double? OptDbl(JsonObject o, string key) => o[key] is null ? null : Dbl(o, key);

    static JsonNode Req(JsonObject o, string key) => o[key] ?? throw new KeyNotFoundException($"missing \"{key}\"");
    static JsonObject Obj(JsonObject o, string key) => Req(o, key).AsObject();
    static JsonArray Arr(JsonObject o, string key) => Req(o, key).AsArray();
    static string Str(JsonObject o, string key) => Req(o, key).GetValue<string>();
    static long Long(JsonObject o, string key) => Req(o, key).GetValue<long>();

    static double Dbl(JsonObject o, string key)
    {
        var v = Req(o, key).AsValue();
        if (v.TryGetValue<string>(out var s))
            return s switch
            {
                "NaN" => double.NaN, "Infinity" => double.PositiveInfinity, "-Infinity" => double.NegativeInfinity,
                _ => throw new FormatException($"\"{key}\" is the string \"{s}\", expected a number"),
            };
        return v.GetValue<double>();
    }
}
