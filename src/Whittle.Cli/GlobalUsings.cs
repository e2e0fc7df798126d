// The CLI is the composition root: every command reads options (System.CommandLine), writes JSON, and drives the
// engine's layers below it, so these namespaces are imported once here. Backends (Cpu, Cuda), Search, Verification and
// Demo stay explicit in the files that reach them.
global using System.CommandLine;
global using System.Text.Json.Nodes;
global using Whittle.Native;
global using Whittle.Native.Tensors;
global using Whittle.Native.Model;
global using Whittle.Native.Data;
global using Whittle.Native.Tokenization;
global using Whittle.Native.Training;
global using Whittle.Native.Evaluation;
global using Whittle.Native.Distillation;
