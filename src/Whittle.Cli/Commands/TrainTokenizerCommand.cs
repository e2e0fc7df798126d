// Policy: `whittle train-tokenizer`: byte-level BPE from text files (.gz read transparently), deterministic, writing a
// Hugging Face tokenizer.json atomically (temporary file, then rename).

namespace Whittle.Cli;

static class TrainTokenizerCommand
{
    public static Command Create()
    {
        var cmd = new Command("train-tokenizer", "Train a byte-level BPE tokenizer and write tokenizer.json.");
        var input = new Option<string[]>("--input") { Description = "Training text files (.gz allowed).", Required = true,
            AllowMultipleArgumentsPerToken = true };
        var vocab = new Option<int>("--vocab-size") { Description = "Vocabulary size including bytes and special tokens.",
            Required = true };
        var output = new Option<string>("--out") { Description = "Where to write tokenizer.json.", Required = true };
        var special = new Option<string[]>("--special") { Description = "Special tokens (ids 0, 1, ...). Default: <|endoftext|>.",
            AllowMultipleArgumentsPerToken = true };
        var replace = new Option<bool>("--replace-invalid") { Description = "Replace invalid UTF-8 with U+FFFD instead of failing." };
        foreach (var o in new Option[] { input, vocab, output, special, replace }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var specials = parse.GetValue(special) is { Length: > 0 } s ? s : ["<|endoftext|>"];
            var trainer = new BpeTrainer(specials);
            foreach (var path in parse.GetValue(input)!) trainer.AddFile(path, parse.GetValue(replace));
            var bytes = trainer.Train(parse.GetValue(vocab));
            var outPath = parse.GetValue(output)!;
            var tmp = outPath + ".tmp";
            File.WriteAllBytes(tmp, bytes);
            File.Move(tmp, outPath, overwrite: true);
            var tok = Tokenizer.FromFile(outPath);
            Console.Error.WriteLine($"wrote {outPath}: vocab {tok.VocabSize}, sha256 {tok.Sha256}");
            return 0;
        });
        return cmd;
    }
}
