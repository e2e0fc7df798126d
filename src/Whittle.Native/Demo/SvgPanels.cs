// Policy: a figure of several SvgPlot panels stacked top to bottom in one SVG, each panel a nested <svg> at its offset,
// rendered exactly as it would be alone (its own axes, legend and clip path, its id suffixed so ids stay unique in a
// page). Panels over the same points share their y range (SvgPlot fits the axis to the data), so stacked panels read as
// one y quantity against several x quantities. Plain SVG 1.1, as SvgPlot: no scripts, fonts or external assets.
using System.Text;

namespace Whittle.Native.Demo;

/// <summary>Anything the report can embed as a figure: one plot or a stack of panels.</summary>
interface ISvgFigure
{
    /// <summary>The figure as an &lt;svg&gt; element; standalone adds the namespace a .svg file needs.</summary>
    string Render(string id, bool standalone);
}

sealed class SvgPanels(string title, IReadOnlyList<SvgPlot> panels) : ISvgFigure
{
    public IReadOnlyList<SvgPlot> Panels => panels;

    public string Render(string id, bool standalone)
    {
        int width = panels.Max(p => p.Width), height = panels.Sum(p => p.Height);
        var sb = new StringBuilder();
        sb.Append($"<svg{(standalone ? " xmlns=\"http://www.w3.org/2000/svg\"" : "")} viewBox=\"0 0 {width} {height}\" width=\"{width}\" " +
            $"height=\"{height}\" role=\"img\" aria-labelledby=\"{id}-title\" class=\"plot\">\n");
        sb.Append($"<title id=\"{id}-title\">{SvgPlot.Xml(title)}</title>\n");
        int y = 0;
        for (int i = 0; i < panels.Count; i++)
        {
            // The panel's own <svg> (no namespace: it is inside this one), moved down to its place.
            string panel = panels[i].Render($"{id}-{i + 1}", standalone: false);
            sb.Append("<svg x=\"0\" y=\"").Append(y).Append('"').Append(panel.AsSpan("<svg".Length));
            y += panels[i].Height;
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }
}
