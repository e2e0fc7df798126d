#!/usr/bin/perl
# prep.pl FILE: rewrites one kernels/*.cu or *.cuh into C++ for g++ and cuda_shim.h; prep.pl -k FILE lists its kernels.
# Mechanical rewrites only, each within its own lines (so #line keeps compiler errors, barrier sites and race reports
# pointing at the original file and line):
#   extern "C" __global__                ->  __global__ (kernels get C++ names inside their file's namespace, so the plain
#                                            and the race-instrumented copy of a file link into one library)
#   extern __shared__ T name[];          ->  #define name ((T*)softgpu::here()->block->dynSmem)   (dynamic shared memory)
#   <indent>__shared__ T name...;        ->  the same, then softgpu::poison_static_shared(&name, sizeof(name));
#   asm [volatile] ("tmpl" : outs : ins); -> softgpu_ptx::<mnemonic, dots as underscores>("tmpl", outs..., ins...);
# An asm whose mnemonic cuda_shim.h does not emulate then fails to compile, naming the function it lacks.
use strict; use warnings;
my $list = @ARGV && $ARGV[0] eq '-k' ? shift : '';
my $file = shift or die "usage: prep.pl [-k] FILE\n";
local $/; open my $fh, '<', $file or die "$file: $!\n"; my $src = <$fh>;
if ($list) {
    print "$_\n" for $src =~ /extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+(\w+)\s*\(/g;
    exit 0;
}
$src =~ s{\bextern\s+"C"\s+(__global__)}{$1}g;
$src =~ s{^([ \t]*)extern\s+__shared__\s+([\w ]+?)\s+(\w+)\s*\[\s*\]\s*;}{$1#define $3 (($2*)softgpu::here()->block->dynSmem)}mg;
$src =~ s{^([ \t]+)(__shared__\s+[\w ]+?\s+(\w+)\s*(?:\[[^\]]*\]\s*)*;)}{$1$2 softgpu::poison_static_shared(&$3, sizeof($3));}mg;
sub operands { my $s = shift // ''; my @o;
    while ($s =~ /"[^"]*"\s*\(((?:[^()]|\((?1)\))*)\)/g) { push @o, $1; } return @o; }
$src =~ s{\basm\s*(?:volatile\s*)?\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)(?::([^:;]*))?(?::([^:;]*))?(?::([^:;]*))?\)\s*;}{
    my ($t, $o, $i, $whole) = ($1, $2, $3, $&);
    my $tmpl = join '', $t =~ /"((?:[^"\\]|\\.)*)"/g;
    (my $mnemonic = (split ' ', $tmpl)[0]) =~ s/;$//; $mnemonic =~ s/\./_/g;
    my $newlines = () = $whole =~ /\n/g;
    "softgpu_ptx::$mnemonic(\"$tmpl\"" . join('', map { ", $_" } operands($o), operands($i)) . ");" . ("\n" x $newlines);
}gse;
print $src;
