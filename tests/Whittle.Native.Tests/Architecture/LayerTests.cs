using System.Reflection;
using System.Reflection.Emit;

namespace Whittle.Native.Tests.Architecture;

/// <summary>
/// Dependencies point one way: a namespace of Whittle.Native may use its own layer and the layers below it, never one
/// above. Read from the compiled assembly (not the source): every type's base types, fields, method signatures and the
/// types and members its method bodies' IL refers to (closures and state machines count as their declaring type).
/// </summary>
public class LayerTests
{
    // Lowest first. A namespace may depend on any namespace of a lower rank (or its own rank: siblings of one layer
    // only where listed in Siblings).
    static readonly Dictionary<string, int> Rank = new()
    {
        ["Whittle.Native"] = 0,            // WhittleException, ErrorText
        ["Whittle.Native.IO"] = 0,
        ["Whittle.Native.Tensors"] = 1,
        ["Whittle.Native.Tokenization"] = 1,
        ["Whittle.Native.Cpu"] = 2,
        ["Whittle.Native.Cuda"] = 2,
        ["Whittle.Native.Cuda.Native"] = 2,
        ["Whittle.Native.Cuda.Launchers"] = 2,
        ["Whittle.Native.Data"] = 2,
        ["Whittle.Native.Autograd"] = 3,
        ["Whittle.Native.Model"] = 4,
        ["Whittle.Native.Training"] = 5,
        ["Whittle.Native.Distillation"] = 5,
        ["Whittle.Native.Search"] = 5,
        ["Whittle.Native.Evaluation"] = 5,
        ["Whittle.Native.Verification"] = 6,
        ["Whittle.Native.Demo"] = 6,
    };

    // Same-rank dependencies that are part of the design (the backends' own sub-namespaces; distillation trains with
    // the trainer, and so does supernet training; everything of rank 5 may evaluate perplexity).
    static readonly HashSet<(string From, string To)> Siblings = new()
    {
        ("Whittle.Native.Cuda", "Whittle.Native.Cuda.Native"), ("Whittle.Native.Cuda", "Whittle.Native.Cuda.Launchers"),
        ("Whittle.Native.Cuda.Launchers", "Whittle.Native.Cuda"), ("Whittle.Native.Cuda.Native", "Whittle.Native.Cuda"),
        ("Whittle.Native", "Whittle.Native.IO"), ("Whittle.Native.IO", "Whittle.Native"),
        ("Whittle.Native.Distillation", "Whittle.Native.Training"), ("Whittle.Native.Distillation", "Whittle.Native.Evaluation"),
        ("Whittle.Native.Training", "Whittle.Native.Evaluation"), ("Whittle.Native.Search", "Whittle.Native.Evaluation"),
        ("Whittle.Native.Demo", "Whittle.Native.Verification"),
        ("Whittle.Native.Search", "Whittle.Native.Training"),   // supernet training trains with the trainer
    };

    static readonly Assembly Engine = typeof(WhittleException).Assembly;

    static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    static Type Outermost(Type t) { while (t.DeclaringType is not null) t = t.DeclaringType; return t; }

    /// <summary>The engine's types that <paramref name="type"/> (with its nested types) refers to.</summary>
    static IEnumerable<Type> References(Type type)
    {
        const BindingFlags All =
            BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var found = new List<Type>();
        void Add(Type? t)
        {
            if (t is null) return;
            if (t.HasElementType) { Add(t.GetElementType()); return; }
            if (t.IsGenericType && !t.IsGenericTypeDefinition) foreach (var a in t.GetGenericArguments()) Add(a);
            if (t.Assembly == Engine && !t.IsGenericParameter) found.Add(Outermost(t.IsGenericType ? t.GetGenericTypeDefinition() : t));
        }
        Add(type.BaseType);
        foreach (var i in type.GetInterfaces()) Add(i);
        foreach (var f in type.GetFields(All)) Add(f.FieldType);
        foreach (var p in type.GetProperties(All)) Add(p.PropertyType);
        foreach (var m in type.GetMethods(All).Cast<MethodBase>().Concat(type.GetConstructors(All)))
        {
            if (m is MethodInfo mi) Add(mi.ReturnType);
            foreach (var p in m.GetParameters()) Add(p.ParameterType);
            byte[]? il;
            try { il = m.GetMethodBody()?.GetILAsByteArray(); } catch (BadImageFormatException) { il = null; }
            if (il is null) continue;
            for (int pos = 0; pos < il.Length;)
            {
                short code = il[pos] == 0xfe ? (short)(0xfe00 | il[pos + 1]) : il[pos];
                pos += il[pos] == 0xfe ? 2 : 1;
                var op = OpCodesByValue[code];
                int size = op.OperandType switch
                {
                    OperandType.InlineNone => 0,
                        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                    OperandType.InlineVar => 2, OperandType.InlineI8 or OperandType.InlineR => 8,
                    OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, pos), _ => 4,
                };
                if (op.OperandType is OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType
                    or OperandType.InlineTok)
                {
                    int token = BitConverter.ToInt32(il, pos);
                    try
                    {
                        var member = m.Module.ResolveMember(token, type.IsGenericType ? type.GetGenericArguments() : null,
                            m.IsGenericMethod ? m.GetGenericArguments() : null);
                        Add(member as Type ?? member?.DeclaringType);
                        if (member is FieldInfo fi) Add(fi.FieldType);
                    }
                    catch (ArgumentException) { }   // a token of an open generic context that cannot be resolved here
                }
                pos += size;
            }
        }
        foreach (var n in type.GetNestedTypes(All)) found.AddRange(References(n));
        return found;
    }

    [Test]
    public void EveryNamespaceHasALayer()
    {
        var unknown = Engine.GetTypes().Select(t => t.Namespace).Where(
            n => n is not null && n.StartsWith("Whittle.Native", StringComparison.Ordinal))
            .Distinct().Where(n => !Rank.ContainsKey(n!)).ToList();
        Assert.That(unknown, Is.Empty, "add the namespace to LayerTests.Rank");
    }

    [Test]
    public void NoNamespaceDependsOnALayerAboveIt()
    {
        var violations = new SortedSet<string>();
        foreach (var type in Engine.GetTypes().Where(
            t => t.DeclaringType is null && t.Namespace is not null && Rank.ContainsKey(t.Namespace)))
            foreach (var used in References(type).Distinct())
            {
                string from = type.Namespace!, to = used.Namespace ?? "";
                if (from == to || !Rank.TryGetValue(to, out int toRank)) continue;
                int fromRank = Rank[from];
                if (toRank < fromRank || Siblings.Contains((from, to))) continue;
                violations.Add($"{type.FullName} ({from}, layer {fromRank}) uses {used.FullName} ({to}, layer {toRank})");
            }
        Assert.That(violations, Is.Empty, string.Join("\n", violations));
    }

    /// <summary>Concrete backends are built by the composition root (the CLI) and compared by Verification; every other
    /// part of the engine works through IBackend.</summary>
    [Test]
    public void OnlyTheBackendsAndVerificationUseConcreteBackendTypes()
    {
        var backendNamespaces = new[] { "Whittle.Native.Cpu", "Whittle.Native.Cuda", "Whittle.Native.Cuda.Native",
            "Whittle.Native.Cuda.Launchers" };
        var allowed = backendNamespaces.Append("Whittle.Native.Verification").ToHashSet();
        var violations = new SortedSet<string>();
        foreach (var type in Engine.GetTypes().Where(
            t => t.DeclaringType is null && t.Namespace is not null && !allowed.Contains(t.Namespace)))
            foreach (var used in References(type).Distinct().Where(u => backendNamespaces.Contains(u.Namespace)))
                violations.Add($"{type.FullName} uses {used.FullName}");
        Assert.That(violations, Is.Empty, string.Join("\n", violations));
    }
}
