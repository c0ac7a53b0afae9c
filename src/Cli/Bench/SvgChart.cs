using System.Globalization;
using System.Text;

namespace Weft.Cli.Bench;

/// <summary>Two small line charts side by side (throughput; TTFT and ITL) against concurrency, as plain SVG.</summary>
static class SvgChart
{
    public static void Write(string path, string title, IReadOnlyList<ServeLevel> levels)
    {
        var svg = new StringBuilder();
        svg.Append("""<svg xmlns="http://www.w3.org/2000/svg" width="900" height="380" font-family="sans-serif" """ +
            """font-size="12">""");
        svg.Append("""<rect width="900" height="380" fill="white"/><text x="450" y="22" text-anchor="middle" """ +
            $"""font-size="15">{Escape(title)}</text>""");
        Panel(svg, 40, "aggregate generated tokens/s",
            [("served", "#1f77b4", levels.Select(l => l.TokensPerSecond).ToArray()),
            .. levels.All(l => l.EngineTokensPerSecond is not null)
                ? [("engine alone", "#aaaaaa", levels.Select(l => l.EngineTokensPerSecond!.Value).ToArray())]
                : Array.Empty<(string, string, double[])>()], levels);
        Panel(svg, 480, "latency (ms)", [("TTFT p50", "#d62728", levels.Select(l => l.TtftP50Ms).ToArray()),
            ("ITL p50", "#2ca02c", levels.Select(l => l.ItlP50Ms).ToArray()),
            ("ITL p99", "#98df8a", levels.Select(l => l.ItlP99Ms).ToArray())], levels);
        svg.Append("</svg>");
        File.WriteAllText(path, svg.ToString());
    }

    static void Panel(StringBuilder svg, int left, string label, (string Name, string Colour, double[] Values)[] series,
        IReadOnlyList<ServeLevel> levels)
    {
        const int top = 50, width = 380, height = 260;
        double max = Math.Max(1e-9, series.Max(s => s.Values.Max())) * 1.1;
        double X(int i) => left + (levels.Count == 1 ? width / 2.0 : i * (double)width / (levels.Count - 1));
        double Y(double v) => top + height - v / max * height;
        string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);
        svg.Append($"""<text x="{left + width / 2}" y="{top - 10}" text-anchor="middle">{Escape(label)}</text>""");
        svg.Append($"""<line x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}" """ +
            $"""stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="black"/>""");
        for (int t = 0; t <= 4; t++)
        {
            double v = max * t / 4;
            svg.Append($"""<text x="{left - 4}" y="{F(Y(v) + 4)}" text-anchor="end" font-size="10">{F(v)}</text>""");
        }
        for (int i = 0; i < levels.Count; i++)
            svg.Append(
                $"""<text x="{F(X(i))}" y="{top + height + 16}" text-anchor="middle">{levels[i].Concurrency}</text>""");
        svg.Append(
            $"""<text x="{left + width / 2}" y="{top + height + 32}" text-anchor="middle">concurrent clients</text>""");
        for (int s = 0; s < series.Length; s++)
        {
            var (name, colour, values) = series[s];
            var points = string.Join(' ', values.Select((v, i) => $"{F(X(i))},{F(Y(v))}"));
            svg.Append($"""<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>""");
            foreach (var (v, i) in values.Select((v, i) => (v, i)))
                svg.Append($"""<circle cx="{F(X(i))}" cy="{F(Y(v))}" r="3" fill="{colour}"/>""");
            svg.Append($"""<rect x="{left + 10}" y="{top + 8 + s * 16}" width="10" height="10" """ +
                $"""fill="{colour}"/><text x="{left + 24}" y="{top + 17 + s * 16}">{Escape(name)}</text>""");
        }
    }

    static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
