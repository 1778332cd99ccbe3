# plots.gp - make bench's charts, from the data files tests/bench/run.sh
# writes beside results.jsonl:
#   throughput.png  total decode tokens/s against sequences decoded together,
#                   one line per format and thread count (throughput.dat)
#   ttft.png        time to first token against prompt length through nginx,
#                   each prompt sent twice: the first send, and the second
#                   with the prefix cache on and off (ttft.dat)
# usage: gnuplot -e "dir='build/bench'" tests/bench/plots.gp
if (!exists("dir")) dir = "build/bench"

have(f) = system("test -s '" . f . "' && echo 1 || echo 0") + 0

# pngcairo where gnuplot has it (gnuplot-nox does), else the plain png terminal
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 800,500 noenhanced font "sans,10"
} else {
    set terminal png size 800,500 noenhanced
}
set grid
set key left top

# ------------------------------------------------------------ throughput
f = dir . "/throughput.dat"
if (have(f)) {
    set output dir . "/throughput.png"
    set title "Total decode throughput vs concurrent sequences"
    set xlabel "sequences decoded together"
    set ylabel "tokens/s (all sequences)"
    set xtics (1, 4, 8)
    set xrange [0.5:8.5]
    set yrange [0:*]
    # one data set per format and thread count, its title on its first line
    plot for [i=0:*] f index i using 1:2 with linespoints lw 2 pt 7 title columnheader(2)
    unset output
    print "plot: " . dir . "/throughput.png"
    unset xtics
    set xtics autofreq
    set xrange [*:*]
}

# ------------------------------------------------------------ TTFT
# columns: prompt tokens, first send (cache on), second send (cache on),
# first send (cache off), second send (cache off); "?" where not measured
f = dir . "/ttft.dat"
if (have(f)) {
    set output dir . "/ttft.png"
    set title "Time to first token vs prompt length (through nginx, each prompt sent twice)"
    set xlabel "prompt tokens"
    set ylabel "time to first token (s)"
    set logscale x 2
    set xrange [*:*]
    set yrange [0:*]
    set datafile missing "?"
    set key left top
    set offsets graph 0.05, graph 0.05, 0, 0
    plot f using 1:4:xtic(1) with linespoints lw 2 pt 7 title "first send (prefix cache off)", \
         f using 1:5 with linespoints lw 2 pt 5 title "second send, prefix cache off", \
         f using 1:2 with linespoints lw 2 pt 9 dt 2 title "first send (prefix cache on)", \
         f using 1:3 with linespoints lw 2 pt 11 title "second send, prefix cache on", \
         f using 1:3:(sprintf("%.0f ms", $3 * 1000)) with labels offset 0,1 notitle
    unset output
    unset logscale x
    set offsets 0, 0, 0, 0
    print "plot: " . dir . "/ttft.png"
}
