// facegraph: show the text a node reports ({"ui": {"text": [...]}}: summaries, licence notes, what was
// written) on the node itself. ComfyUI's frontend draws a node's ui.images by itself but not its ui.text.
// The text goes into one read-only box per node that is never saved into the workflow (serialize = false),
// so saved templates keep their widget values by position.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const BOX = "facegraph_info";

function infoBox(node) {
    let box = node.widgets?.find((w) => w.name === BOX);
    if (!box) {
        box = ComfyWidgets["STRING"](node, BOX, ["STRING", { multiline: true }], app).widget;
        box.serialize = false;
        box.options = { ...(box.options || {}), serialize: false };
        if (box.inputEl) {
            box.inputEl.readOnly = true;
            box.inputEl.style.opacity = 0.75;
        }
    }
    return box;
}

app.registerExtension({
    name: "facegraph.text",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!nodeData?.name?.startsWith("Facegraph")) {
            return;
        }
        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (message) {
            onExecuted?.apply(this, arguments);
            const text = message?.text;
            if (!Array.isArray(text) || text.length === 0) {
                return;
            }
            infoBox(this).value = text.map(String).join("\n");
            this.setSize?.([this.size[0], Math.max(this.size[1], this.computeSize()[1])]);
            this.setDirtyCanvas?.(true, true);
        };
    },
});
